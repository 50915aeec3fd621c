//! Many threads at once: producers allocate blocks of random sizes (some aligned, some grown
//! with realloc), fill each with a pattern derived from its identity, and hand them to
//! consumers on other threads, which verify the pattern and free them. Runs with tallymalloc as
//! the global allocator, so the channels and vectors use it too.

use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

const PRODUCERS: usize = 6;
const CONSUMERS: usize = 4;
const BLOCKS_PER_PRODUCER: usize = 60_000;

struct Handoff {
    address: usize,
    size: usize,
    identity: u64,
}

/// xorshift64*: a deterministic stream per thread.
struct Random(u64);
impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn pattern_byte(identity: u64, offset: usize) -> u8 {
    (identity.wrapping_mul(31).wrapping_add(offset as u64 * 7) >> 3) as u8
}

fn fill(address: usize, size: usize, identity: u64) {
    for offset in 0..size {
        // SAFETY: the block is live and `size` bytes long.
        unsafe { *((address + offset) as *mut u8) = pattern_byte(identity, offset) };
    }
}

fn verify(address: usize, size: usize, identity: u64) {
    for offset in 0..size {
        // SAFETY: as in `fill`.
        let byte = unsafe { *((address + offset) as *const u8) };
        assert_eq!(
            byte,
            pattern_byte(identity, offset),
            "block {identity} corrupt at {offset}"
        );
    }
}

fn random_size(random: &mut Random) -> usize {
    match random.next() % 100 {
        0..=69 => (random.next() % 256) as usize,
        70..=94 => (random.next() % 8192) as usize,
        95..=98 => (random.next() % 200_000) as usize,
        _ => (random.next() % 1_500_000) as usize,
    }
}

#[test]
fn producers_and_consumers_on_many_threads_keep_every_block_intact() {
    let mut senders = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let (sender, receiver) = mpsc::channel::<Handoff>();
        senders.push(sender);
        consumers.push(thread::spawn(move || {
            let mut freed = 0usize;
            for handoff in receiver {
                verify(handoff.address, handoff.size, handoff.identity);
                // SAFETY: the producer handed the live block over; it is freed once.
                unsafe { tallymalloc::free(handoff.address as *mut u8) };
                freed += 1;
            }
            freed
        }));
    }
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let senders = senders.clone();
            thread::spawn(move || {
                let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ ((producer as u64 + 1) * 977));
                let mut kept: Vec<(usize, usize, u64)> = Vec::new();
                for sequence in 0..BLOCKS_PER_PRODUCER {
                    let identity = ((producer as u64) << 32) | sequence as u64;
                    let size = random_size(&mut random);
                    let block = match random.next() % 4 {
                        0 => tallymalloc::aligned_alloc(size, 1 << (random.next() % 13)),
                        _ => tallymalloc::malloc(size),
                    }
                    .expect("allocation");
                    fill(block.as_ptr() as usize, size, identity);
                    // Some blocks stay a while and are grown or shrunk first.
                    if random.next().is_multiple_of(8) {
                        kept.push((block.as_ptr() as usize, size, identity));
                    } else {
                        let consumer = (random.next() % CONSUMERS as u64) as usize;
                        let handoff = Handoff {
                            address: block.as_ptr() as usize,
                            size,
                            identity,
                        };
                        senders[consumer].send(handoff).unwrap();
                    }
                    if kept.len() > 64 {
                        let (address, size, identity) = kept.swap_remove(0);
                        verify(address, size, identity);
                        let new_size = random_size(&mut random);
                        // SAFETY: `address` is live; realloc consumes it.
                        let grown = unsafe { tallymalloc::realloc(address as *mut u8, new_size) }
                            .expect("realloc");
                        verify(grown.as_ptr() as usize, size.min(new_size), identity);
                        fill(grown.as_ptr() as usize, new_size, identity);
                        let consumer = (random.next() % CONSUMERS as u64) as usize;
                        let handoff = Handoff {
                            address: grown.as_ptr() as usize,
                            size: new_size,
                            identity,
                        };
                        senders[consumer].send(handoff).unwrap();
                    }
                }
                for (address, size, identity) in kept {
                    verify(address, size, identity);
                    // SAFETY: live block, freed once.
                    unsafe { tallymalloc::free(address as *mut u8) };
                }
            })
        })
        .collect();
    drop(senders);
    for producer in producers {
        producer.join().unwrap();
    }
    let freed: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(freed > PRODUCERS * BLOCKS_PER_PRODUCER * 3 / 4);
}
