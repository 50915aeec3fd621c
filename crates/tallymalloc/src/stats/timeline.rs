//! The stats timeline: with `TALLYMALLOC_STATS_INTERVAL=MS`, a sampler thread records the time,
//! the process's resident bytes and each domain's live bytes every MS milliseconds, for the
//! exit-time JSON (`TALLYMALLOC_STATS=json:PATH`) to plot memory over time.
//!
//! The sampler does not disturb the program: it never allocates (it has no heap; snapshots live
//! on its stack and samples in a mapping of its own), takes only the stats' list lock (which
//! allocating threads never take), and sleeps between samples. Creating its thread is the one
//! thing that may allocate (glibc allocates a new thread's TLS bookkeeping), once, at start-up.
//!
//! Invariants:
//! - **TL1**: samples are appended and read under `STORE`'s lock; a record is `[time_ms,
//!   resident_bytes, n, live_bytes of domains 0..n]` in 64-bit words, back to back.
//! - **TL2**: when the mapping is full, every other sample is dropped and the interval between
//!   kept samples doubles, so a long run keeps an even sampling of its whole span in bounded
//!   memory.

use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use crate::policy::domain::Domain;
use crate::stats;
use core::sync::atomic::{AtomicBool, Ordering};

/// Room for samples: 1 Mi words (8 MiB of address space, touched as samples arrive).
const CAPACITY_WORDS: usize = 1 << 20;

struct Store {
    words: *mut u64,
    used: usize,
    /// Keep one sample in `stride` (TL2).
    stride: u64,
    ticks: u64,
}

// SAFETY: the store is only touched under its lock (TL1).
unsafe impl Send for Store {}

static STORE: SpinLock<Store> = SpinLock::new(
    Rank::Timeline,
    Store {
        words: core::ptr::null_mut(),
        used: 0,
        stride: 1,
        ticks: 0,
    },
);

static STARTED: AtomicBool = AtomicBool::new(false);

/// One recorded sample.
pub struct Sample<'a> {
    pub time_ms: u64,
    pub resident_bytes: u64,
    live: &'a [u64],
}

impl Sample<'_> {
    /// Each registered domain's live bytes at the time of the sample.
    pub fn live_bytes(&self) -> impl Iterator<Item = (Domain, u64)> + '_ {
        self.live
            .iter()
            .enumerate()
            .filter_map(|(id, &live)| Domain::from_id(id).map(|domain| (domain, live)))
    }
}

/// Starts the sampler thread taking a sample every `interval_ms` (once per process).
pub fn start(interval_ms: u64) {
    if interval_ms == 0 || STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(words) = os::reserve_metadata(CAPACITY_WORDS * 8) else {
        crate::platform::text::write_stderr(b"tallymalloc: no memory for the stats timeline\n");
        return;
    };
    STORE.lock().words = words.as_ptr().cast();
    // The argument is the interval as a plain number.
    let argument = interval_ms as usize as *mut libc::c_void;
    if !crate::platform::os::spawn_thread(sample_forever, argument) {
        crate::platform::text::write_stderr(b"tallymalloc: could not start the stats sampler\n");
    }
}

extern "C" fn sample_forever(argument: *mut libc::c_void) -> *mut libc::c_void {
    let interval_ms = argument as usize as u64;
    loop {
        take_sample();
        // An interrupted sleep just samples early.
        os::sleep_millis(interval_ms);
    }
}

/// Records one sample now (the sampler's loop; tests call it directly).
pub fn take_sample() {
    let snapshot = stats::snapshot();
    let domains = Domain::all()
        .map(|domain| domain.id() + 1)
        .max()
        .unwrap_or(0);
    let mut store = STORE.lock();
    if store.words.is_null() {
        return;
    }
    store.ticks += 1;
    if !(store.ticks - 1).is_multiple_of(store.stride) {
        return;
    }
    let record = 3 + domains;
    if store.used + record > CAPACITY_WORDS {
        thin(&mut store);
    }
    let start = store.used;
    // SAFETY: TL1: we hold the lock and the record fits in the mapping.
    unsafe {
        let words = store.words.add(start);
        *words = snapshot.process.uptime_ms;
        *words.add(1) = snapshot.process.resident_bytes;
        *words.add(2) = domains as u64;
        for id in 0..domains {
            let live = Domain::from_id(id).map_or(0, |domain| snapshot.domain(domain).live_bytes);
            *words.add(3 + id) = live;
        }
    }
    store.used += record;
}

/// Drops every other sample and doubles the stride (TL2).
fn thin(store: &mut Store) {
    let (mut read, mut write, mut index) = (0usize, 0usize, 0u64);
    while read < store.used {
        // SAFETY: TL1: records lie in [0, used), and `write <= read` keeps the copy in bounds.
        unsafe {
            let length = 3 + *store.words.add(read + 2) as usize;
            if index % 2 == 0 {
                core::ptr::copy(store.words.add(read), store.words.add(write), length);
                write += length;
            }
            read += length;
        }
        index += 1;
    }
    store.used = write;
    store.stride *= 2;
}

/// Calls `visit` with the samples whose indices (oldest first, from 0) lie in `range`: none if
/// no sampler ran. Samples only ever go on the end, so a range read once names the same samples
/// later, until the store is thinned (TL2).
pub fn for_each_sample(range: core::ops::Range<usize>, mut visit: impl FnMut(&Sample<'_>)) {
    let store = STORE.lock();
    let mut read = 0usize;
    let mut index = 0usize;
    while read < store.used && index < range.end {
        // SAFETY: TL1: we hold the lock; records lie in [0, used).
        unsafe {
            let words = store.words.add(read);
            let count = *words.add(2) as usize;
            if index >= range.start {
                visit(&Sample {
                    time_ms: *words,
                    resident_bytes: *words.add(1),
                    live: core::slice::from_raw_parts(words.add(3), count),
                });
            }
            read += 3 + count;
        }
        index += 1;
    }
}

/// How many samples the timeline holds now.
pub fn sample_count() -> usize {
    let mut count = 0;
    for_each_sample(0..usize::MAX, |_| count += 1);
    count
}
