//! Debug mode's two lists of blocks, the live ones and the quarantine of freed ones, sharded by
//! thread: each thread takes a shard on its first debug block, so a program's threads neither
//! wait for one another nor pass the lists' cache lines around, and a block freed by the
//! thread that allocated it, the common case, touches only that thread's shard.
//!
//! Invariants:
//! - **D3**: a live block is on the live list of the shard its header names; a freed one is in
//!   the quarantine of the shard of the thread that freed it until it goes back to the core.
//!   Both link through the headers and change only under their shard's lock.
//! - **D5**: a shard's quarantine holds at most the budget (`TALLYMALLOC_QUARANTINE`) divided
//!   among the shards taken so far, so one thread alone keeps the whole budget.

use super::Header;
use crate::platform::list::{Linked, Links, List};
use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Shards of each list.
pub const SHARDS: usize = 16;

/// Debug blocks on one shard of one list, and their bytes (D3).
pub struct Blocks {
    headers: List<Header>,
    bytes: usize,
}

// SAFETY: the list is touched only under its lock (D3).
unsafe impl Send for Blocks {}

// SAFETY: `links` is the header's field for its one list.
unsafe impl Linked for Header {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is a valid header.
        unsafe { &raw mut (*this).links }
    }
}

impl Blocks {
    const fn new() -> Blocks {
        Blocks {
            headers: List::EMPTY,
            bytes: 0,
        }
    }

    /// # Safety
    /// `header` is a debug header on no list (D3).
    unsafe fn push_back(&mut self, header: *mut Header) {
        // SAFETY: the caller's contract; we hold the list's lock.
        unsafe {
            self.headers.push_back(header);
            self.bytes += (*header).size;
        }
    }

    /// # Safety
    /// `header` is on this list.
    unsafe fn remove(&mut self, header: *mut Header) {
        // SAFETY: the caller's contract; we hold the list's lock.
        unsafe {
            self.headers.remove(header);
            self.bytes -= (*header).size;
        }
    }
}

/// One shard's lock on a cache line of its own.
#[repr(align(64))]
struct Shard(SpinLock<Blocks>);

static LIVE: [Shard; SHARDS] =
    [const { Shard(SpinLock::new(Rank::DebugLiveBlocks, Blocks::new())) }; SHARDS];
static QUARANTINE: [Shard; SHARDS] =
    [const { Shard(SpinLock::new(Rank::DebugQuarantine, Blocks::new())) }; SHARDS];

/// Shards handed to threads so far (D5); threads beyond `SHARDS` share, round robin.
static SHARDS_TAKEN: AtomicUsize = AtomicUsize::new(0);

const NO_SHARD: u8 = u8::MAX;

thread_local! {
    static THREAD_SHARD: Cell<u8> = const { Cell::new(NO_SHARD) };
}

/// The calling thread's shard.
#[inline]
pub fn thread_shard() -> usize {
    THREAD_SHARD.with(|shard| {
        let mut index = shard.get();
        if index == NO_SHARD {
            index = (SHARDS_TAKEN.fetch_add(1, Ordering::Relaxed) % SHARDS) as u8;
            shard.set(index);
        }
        index as usize
    })
}

/// Puts a new debug block on the calling thread's live list and notes the shard in it.
///
/// # Safety
/// `header` is a fresh debug header on no list.
pub unsafe fn add_live(header: *mut Header) {
    let shard = thread_shard();
    // SAFETY: the caller's contract; the header is ours until it is on the list.
    unsafe {
        (*header).shard = shard as u8;
        LIVE[shard].0.lock().push_back(header);
    }
}

/// Takes a block off the live list it is on.
///
/// # Safety
/// `header` is on a live list (D3), claimed by the caller (D2).
pub unsafe fn remove_live(header: *mut Header) {
    // SAFETY: the caller's contract: its shard names the list it is on.
    unsafe { LIVE[(*header).shard as usize].0.lock().remove(header) }
}

/// Holds a freed block in the calling thread's quarantine and hands each block that leaves it
/// (the oldest, until the shard is within its share of the budget) to `release`, outside the
/// lock, a batch at a time.
///
/// # Safety
/// `header` is a claimed (D2) debug block on no list.
pub unsafe fn quarantine(header: *mut Header, mut release: impl FnMut(*mut Header)) {
    let shards = SHARDS_TAKEN.load(Ordering::Relaxed).clamp(1, SHARDS);
    let budget = crate::policy::options::quarantine_bytes() / shards;
    let shard = &QUARANTINE[thread_shard()].0;
    let mut incoming = header;
    loop {
        let mut leaving: [*mut Header; 16] = [ptr::null_mut(); 16];
        let mut count = 0;
        {
            let mut held = shard.lock();
            if !incoming.is_null() {
                // SAFETY: the caller's contract.
                unsafe { held.push_back(incoming) };
                incoming = ptr::null_mut();
            }
            while held.bytes > budget && !held.headers.is_empty() && count < leaving.len() {
                let oldest = held.headers.first();
                // SAFETY: the first header of the list is on it.
                unsafe { held.remove(oldest) };
                leaving[count] = oldest;
                count += 1;
            }
            // The next to leave has been out of the caches since it came in, a budget's worth
            // of frees ago; its poison is read when it leaves. Asked for now, it arrives while
            // the program runs on.
            prefetch(held.headers.first());
        }
        for &oldest in &leaving[..count] {
            release(oldest);
        }
        // D5: a large block, or a budget shared among more threads than when the shard
        // filled, can take more than one batch.
        if count < leaving.len() {
            return;
        }
    }
}

/// Asks for the first lines of the block at `header` (its header, and the first bytes after it)
/// to be brought into the cache; nothing for null. Only a hint: it reads nothing itself.
#[inline(always)]
fn prefetch(header: *mut Header) {
    #[cfg(target_arch = "x86_64")]
    if !header.is_null() {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch reads nothing and cannot fault, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(header.cast());
            _mm_prefetch::<_MM_HINT_T0>(header.cast::<i8>().wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(header.cast::<i8>().wrapping_add(128));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = header;
}

/// Calls `visit` on every live block, one shard at a time under its lock.
pub fn for_each_live(visit: impl FnMut(*mut Header)) {
    for_each_in(&LIVE, visit);
}

/// Calls `visit` on every quarantined block, one shard at a time under its lock.
pub fn for_each_quarantined(visit: impl FnMut(*mut Header)) {
    for_each_in(&QUARANTINE, visit);
}

fn for_each_in(shards: &[Shard; SHARDS], mut visit: impl FnMut(*mut Header)) {
    for shard in shards {
        let blocks = shard.0.lock();
        let mut header = blocks.headers.first();
        while !header.is_null() {
            visit(header);
            // SAFETY: D3: the header is on the list, which we hold.
            header = unsafe { List::next(header) };
        }
    }
}

/// Bytes of freed blocks in the quarantine now.
pub fn quarantined_bytes() -> usize {
    QUARANTINE.iter().map(|shard| shard.0.lock().bytes).sum()
}
