//! Allocation sites: the distinct call stacks debug mode has seen, numbered from 1, so that a
//! block's header holds a 32-bit site instead of a stack, and leaks group by site.
//!
//! Invariants:
//! - **ST1**: the table is one mapping of `CAPACITY` entries, made on first use and never
//!   freed; entries are written once, under the lock, and never change after, so a site's
//!   stack can be read without the lock once its number is known.
//! - **ST2**: nothing here allocates through the allocator.

use crate::debug::backtrace::Stack;
use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use core::ptr;

/// Distinct stacks kept; later ones get site 0 ("unknown").
pub const CAPACITY: usize = 1 << 15;

struct Table {
    /// `CAPACITY` slots, or null before first use.
    entries: *mut Stack,
    used: usize,
}

// SAFETY: the table is reached only under its lock, or read-only after publication (ST1).
unsafe impl Send for Table {}

static TABLE: SpinLock<Table> = SpinLock::new(
    Rank::Sites,
    Table {
        entries: ptr::null_mut(),
        used: 0,
    },
);

fn hash(stack: &Stack) -> usize {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &frame in stack.frames() {
        h = (h ^ frame as u64).wrapping_mul(0x1000_0000_01b3);
    }
    (h ^ (h >> 29)) as usize
}

/// The site number of `stack` (1-based), added if new; 0 if the table is full or unmappable.
pub fn intern(stack: &Stack) -> u32 {
    let mut table = TABLE.lock();
    if table.entries.is_null() {
        let bytes = CAPACITY * core::mem::size_of::<Stack>();
        match crate::platform::os::reserve_metadata(bytes) {
            // Fresh anonymous memory is zero: every slot reads as an empty stack.
            Some(memory) => table.entries = memory.as_ptr().cast(),
            None => return 0,
        }
    }
    let mut slot = hash(stack) % CAPACITY;
    for _ in 0..CAPACITY {
        // SAFETY: ST1: `slot < CAPACITY` lies in the mapping; we hold the lock.
        let entry = unsafe { &mut *table.entries.add(slot) };
        if entry.depth == 0 {
            if table.used + 1 >= CAPACITY {
                return 0;
            }
            *entry = *stack;
            table.used += 1;
            return slot as u32 + 1;
        }
        if entry == stack {
            return slot as u32 + 1;
        }
        slot = (slot + 1) % CAPACITY;
    }
    0
}

/// The stack of `site`, if it names one.
pub fn stack(site: u32) -> Option<Stack> {
    if site == 0 || site as usize > CAPACITY {
        return None;
    }
    let entries = TABLE.lock().entries;
    if entries.is_null() {
        return None;
    }
    // SAFETY: ST1: a site number was handed out for a written entry, never changed since.
    let stack = unsafe { *entries.add(site as usize - 1) };
    (stack.depth > 0).then_some(stack)
}
