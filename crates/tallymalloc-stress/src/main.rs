//! `tallymalloc-stress`: a torture test. Worker threads run a random mix of malloc, calloc,
//! realloc, aligned allocation and free, over sizes from 0 to 4 MiB, in a domain of their own;
//! they hand blocks to each other through shared slots (so blocks are freed and resized on
//! other threads than the ones that allocated them) and end after a random number of
//! operations, replaced by new threads (churn). Every block is filled with a pattern derived
//! from its identity, checked when it is freed or resized: a block handed out twice, a lost
//! write, a realloc that drops bytes, all show as a wrong byte. At the end every block is
//! freed, and the domain's stats must say so: as many frees as allocations, nothing live.
//!
//! Each worker's operations follow from `--seed` and its number; the interleaving of threads
//! does not.
//!
//! ```text
//! tallymalloc-stress [--seconds 10] [--threads 8] [--seed 1]
//! ```

use clap::Parser;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tallymalloc::Domain;

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

#[derive(Parser)]
#[command(about = "Torture tallymalloc with threads, hand-offs and churn, checking every block")]
struct Options {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Worker threads alive at a time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
    /// Seeds every worker's operations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Checks the checker: the first worker overwrites a byte of one of its blocks after this
    /// many operations, which must end the run with a report.
    #[arg(long, value_name = "OPERATIONS")]
    corrupt_after: Option<u64>,
}

/// A block and what it must hold.
struct Block {
    address: NonNull<u8>,
    size: usize,
    id: u64,
}

// SAFETY: a block is owned by one thread at a time; the hand-off through a slot transfers it.
unsafe impl Send for Block {}

/// The byte at `index` of block `id`.
fn pattern(id: u64, index: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (index as u8).wrapping_mul(31)
}

/// The offsets a block's pattern is written at: every byte of a small block; of a larger one
/// the first and last 64 bytes and one byte in each 4 KiB.
fn checked_offsets(size: usize) -> impl Iterator<Item = usize> {
    let dense = size.min(64);
    let tail_start = size.saturating_sub(64).max(dense);
    (0..dense)
        .chain((dense..tail_start).step_by(4096).skip(1))
        .chain(tail_start..size)
}

impl Block {
    fn fill(&self) {
        for offset in checked_offsets(self.size) {
            // SAFETY: offsets lie inside the live block, which this thread owns.
            unsafe { *self.address.as_ptr().add(offset) = pattern(self.id, offset) };
        }
    }

    /// Panics unless the pattern is intact in the first `size` bytes of the layout of
    /// `layout_size` (the size the pattern was written for).
    fn verify(&self, layout_size: usize, size: usize, context: &str) {
        for offset in checked_offsets(layout_size).filter(|&o| o < size) {
            // SAFETY: as in `fill`.
            let found = unsafe { *self.address.as_ptr().add(offset) };
            if found != pattern(self.id, offset) {
                panic!(
                    "{context}: block {} ({} bytes at {:p}) holds {found:#04x} at offset {offset}, \
                     not {:#04x}",
                    self.id,
                    layout_size,
                    self.address,
                    pattern(self.id, offset)
                );
            }
        }
    }
}

/// A small, fast, seedable generator (SplitMix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Mostly small sizes, some medium, a few up to 4 MiB.
    fn size(&mut self) -> usize {
        let bucket = self.below(1000);
        let limit = match bucket {
            0..=599 => 256,
            600..=899 => 64 << 10,
            900..=989 => 1 << 20,
            _ => 4 << 20,
        };
        self.below(limit + 1) as usize
    }
}

#[derive(Default)]
struct Tally {
    mallocs: AtomicU64,
    callocs: AtomicU64,
    reallocs: AtomicU64,
    aligned: AtomicU64,
    frees: AtomicU64,
    hand_offs: AtomicU64,
    bytes: AtomicU64,
    threads: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

const SLOTS: usize = 1024;
const MAX_HELD: usize = 2000;
const MAX_HELD_BYTES: usize = 32 << 20;

struct Shared {
    domain: Domain,
    slots: Vec<AtomicPtr<Block>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    tally: Tally,
}

impl Shared {
    fn take_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Puts `block` in slot `index` and returns what was there.
    fn swap(&self, index: usize, block: Option<Block>) -> Option<Block> {
        let new = block.map_or(std::ptr::null_mut(), |b| Box::into_raw(Box::new(b)));
        let old = self.slots[index].swap(new, Ordering::AcqRel);
        // SAFETY: slots hold only pointers from Box::into_raw, each taken out once by the swap.
        (!old.is_null()).then(|| *unsafe { Box::from_raw(old) })
    }
}

struct Worker<'a> {
    shared: &'a Shared,
    random: Random,
    held: Vec<Block>,
    held_bytes: usize,
}

impl Worker<'_> {
    fn allocate(&mut self) {
        let shared = self.shared;
        let size = self.random.size();
        let id = shared.take_id();
        let kind = self.random.below(10);
        let address = match kind {
            0..=5 => {
                Tally::add(&shared.tally.mallocs, 1);
                shared.domain.alloc(size)
            }
            6..=7 => {
                Tally::add(&shared.tally.callocs, 1);
                let block = shared.domain.calloc(1, size);
                if let Some(address) = block {
                    for offset in checked_offsets(size) {
                        // SAFETY: a live block of `size` bytes.
                        let byte = unsafe { *address.as_ptr().add(offset) };
                        assert_eq!(byte, 0, "calloc'd block {id} not zero at {offset}");
                    }
                }
                block
            }
            _ => {
                Tally::add(&shared.tally.aligned, 1);
                let align = 16usize << self.random.below(9); // 16 B to 4 KiB
                let block = shared.domain.aligned_alloc(size, align);
                if let Some(address) = block {
                    assert_eq!(
                        address.as_ptr() as usize % align,
                        0,
                        "misaligned block {id}"
                    );
                }
                block
            }
        };
        let address = address.unwrap_or_else(|| panic!("allocating {size} bytes failed"));
        Tally::add(&shared.tally.bytes, size as u64);
        let block = Block { address, size, id };
        block.fill();
        self.held_bytes += size;
        self.held.push(block);
    }

    fn free_at(&mut self, index: usize) {
        let block = self.held.swap_remove(index);
        self.held_bytes -= block.size;
        self.release(block);
    }

    fn release(&self, block: Block) {
        block.verify(block.size, block.size, "free");
        // SAFETY: a live block of the domain, freed once.
        unsafe { self.shared.domain.free(block.address.as_ptr()) };
        Tally::add(&self.shared.tally.frees, 1);
    }

    fn reallocate_at(&mut self, index: usize) {
        let new_size = self.random.size();
        let block = &mut self.held[index];
        block.verify(block.size, block.size, "before realloc");
        // SAFETY: a live block of the domain; on success it moves to the returned address.
        let moved = unsafe { self.shared.domain.realloc(block.address.as_ptr(), new_size) }
            .unwrap_or_else(|| panic!("realloc to {new_size} bytes failed"));
        let old_size = block.size;
        block.address = moved;
        block.verify(old_size, new_size.min(old_size), "after realloc");
        block.size = new_size;
        block.fill();
        self.held_bytes = self.held_bytes - old_size + new_size;
        Tally::add(&self.shared.tally.reallocs, 1);
        Tally::add(&self.shared.tally.bytes, new_size as u64);
    }

    fn hand_off(&mut self) {
        let slot = self.random.below(SLOTS as u64) as usize;
        let given = if self.held.is_empty() {
            None
        } else {
            let index = self.random.below(self.held.len() as u64) as usize;
            let block = self.held.swap_remove(index);
            self.held_bytes -= block.size;
            Some(block)
        };
        if let Some(received) = self.shared.swap(slot, given) {
            received.verify(received.size, received.size, "after a hand-off");
            self.held_bytes += received.size;
            self.held.push(received);
        }
        Tally::add(&self.shared.tally.hand_offs, 1);
    }

    fn step(&mut self) {
        let over = self.held.len() >= MAX_HELD || self.held_bytes >= MAX_HELD_BYTES;
        let choice = if self.held.is_empty() {
            0
        } else {
            self.random.below(100)
        };
        match choice {
            _ if over => {
                let index = self.random.below(self.held.len() as u64) as usize;
                self.free_at(index);
            }
            0..=44 => self.allocate(),
            45..=79 => {
                let index = self.random.below(self.held.len() as u64) as usize;
                self.free_at(index);
            }
            80..=89 => {
                let index = self.random.below(self.held.len() as u64) as usize;
                self.reallocate_at(index);
            }
            _ => self.hand_off(),
        }
    }

    /// Runs `operations` steps (or until told to stop), then leaves some blocks in the slots
    /// for other threads and frees the rest. With `corrupt_after`, spoils a byte of a block
    /// after that many steps.
    fn run(mut self, operations: u64, corrupt_after: Option<u64>) {
        for done in 0..operations {
            if done % 1024 == 0 && self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if Some(done) == corrupt_after {
                if let Some(block) = self.held.iter().find(|b| b.size > 0) {
                    // SAFETY: a live block of ours with at least one byte.
                    unsafe { *block.address.as_ptr() = !pattern(block.id, 0) };
                }
            }
            self.step();
        }
        while let Some(block) = self.held.pop() {
            if self.random.below(4) == 0 {
                let slot = self.random.below(SLOTS as u64) as usize;
                if let Some(displaced) = self.shared.swap(slot, Some(block)) {
                    self.release(displaced);
                }
            } else {
                self.release(block);
            }
        }
    }
}

fn main() {
    let options = Options::parse();
    let domain = Domain::register("torture").expect("a domain of its own");
    let shared = Arc::new(Shared {
        domain,
        slots: (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        next_id: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        tally: Tally::default(),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds.max(0.0));
    let mut master = Random(options.seed);
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut started_threads = 0u64;
    loop {
        workers.retain(|w| !w.is_finished());
        if Instant::now() >= deadline {
            break;
        }
        while (workers.len() as u64) < options.threads {
            let shared = shared.clone();
            let seed = options.seed ^ started_threads.wrapping_mul(0xD6E8_FEB8_6659_FD93);
            let operations = 1_000 + master.below(30_000);
            let corrupt_after = options.corrupt_after.filter(|_| started_threads == 0);
            started_threads += 1;
            Tally::add(&shared.tally.threads, 1);
            workers.push(std::thread::spawn(move || {
                let worker = Worker {
                    shared: &shared,
                    random: Random(seed),
                    held: Vec::new(),
                    held_bytes: 0,
                };
                worker.run(
                    operations.max(corrupt_after.unwrap_or(0) + 1),
                    corrupt_after,
                );
            }));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if worker.join().is_err() {
            eprintln!("tallymalloc-stress: a worker failed");
            std::process::exit(1);
        }
    }
    for slot in 0..SLOTS {
        if let Some(block) = shared.swap(slot, None) {
            block.verify(block.size, block.size, "left in a slot");
            // SAFETY: a live block of the domain, freed once.
            unsafe { domain.free(block.address.as_ptr()) };
            Tally::add(&shared.tally.frees, 1);
        }
    }
    let tally = &shared.tally;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let allocations = load(&tally.mallocs) + load(&tally.callocs) + load(&tally.aligned);
    let stats = tallymalloc::stats();
    let figures = stats.domain(domain);
    println!(
        "{:.1} s, {} threads: {} operations ({} malloc, {} calloc, {} aligned, {} realloc, {} free, \
         {} hand-offs), {:.1} GiB requested; every block checked",
        started.elapsed().as_secs_f64(),
        load(&tally.threads),
        allocations + load(&tally.reallocs) + load(&tally.frees) + load(&tally.hand_offs),
        load(&tally.mallocs),
        load(&tally.callocs),
        load(&tally.aligned),
        load(&tally.reallocs),
        load(&tally.frees),
        load(&tally.hand_offs),
        load(&tally.bytes) as f64 / (1u64 << 30) as f64
    );
    // A realloc that moves counts as a free and an allocation in the stats; one in place as
    // neither. So the stats must show at least the harness's allocations, as many frees, and
    // nothing live.
    // (In debug mode the quarantine still holds freed blocks, which the stats count as live.)
    let disagree = figures.live_blocks != 0
        || figures.live_usable_bytes != 0
        || figures.allocations != figures.frees
        || figures.allocations < allocations;
    if disagree && !tallymalloc::debug_active() {
        eprintln!(
            "tallymalloc-stress: the stats disagree with the harness's {allocations} \
             allocations, all freed: {figures:?}"
        );
        std::process::exit(1);
    }
    if load(&tally.frees) != allocations {
        eprintln!(
            "tallymalloc-stress: {} blocks allocated but {} freed",
            allocations,
            load(&tally.frees)
        );
        std::process::exit(1);
    }
}
