//! The registry: answers "is this address one of ours?" for any address, in O(1), lock-free.
//!
//! One byte per segment-sized slot of the 48-bit user address space, set while a segment (or a
//! huge block) starts in that slot. The map is a zero-initialised static, so it lives in
//! `.bss`: 64 MiB of address space, of which the kernel maps only the pages touched (a page of
//! the map covers 16 GiB of addresses), and reading an untouched part costs no memory. A byte
//! rather than a bit makes the query on `free`'s fast path four instructions shorter (a shift,
//! a bound and a byte compare, against a word load and a bit test; docs/MEASUREMENTS.md).
//!
//! Invariants:
//! - a slot's bit is set after the segment header is written and before any block of it is
//!   handed out, and cleared before its memory is returned to the OS;
//! - only the slot where a segment *starts* is marked, so a huge block's tail slots stay clear:
//!   every pointer we hand out lies in its segment's first slot (blocks start within
//!   `SEGMENT_SIZE` of their segment), which is the slot a query masks to;
//! - addresses at or above 2^48 are never ours; a segment mapped there is refused;
//! - slot 0 (the first 4 MiB, which holds address 0) is never set: no segment can start at
//!   address 0, since the kernel never maps page 0. So `contains(null)` is false, and callers
//!   need no separate null test.

use core::sync::atomic::{AtomicU8, Ordering};

const ADDRESS_BITS: u32 = 48;
/// A slot is a segment's size (`segment.rs` checks that the two agree); the registry needs
/// nothing else of segments.
pub const SLOT_SHIFT: u32 = 22;
const SLOT_COUNT: usize = 1 << (ADDRESS_BITS - SLOT_SHIFT);

static SLOTS: [AtomicU8; SLOT_COUNT] = [const { AtomicU8::new(0) }; SLOT_COUNT];

/// The slot of `address`, if the registry covers it.
#[inline(always)]
fn slot_of(address: usize) -> Option<&'static AtomicU8> {
    SLOTS.get(address >> SLOT_SHIFT)
}

/// Marks the segment starting at `segment_start` as ours. Returns false (and marks nothing) if
/// the address is outside the range the registry covers.
pub fn register(segment_start: usize) -> bool {
    match slot_of(segment_start) {
        Some(slot) => {
            slot.store(1, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Forgets the segment starting at `segment_start`.
pub fn unregister(segment_start: usize) {
    if let Some(slot) = slot_of(segment_start) {
        slot.store(0, Ordering::Release);
    }
}

/// Whether `address` lies in the first slot of a live segment of ours: true for every pointer
/// tallymalloc has handed out and not yet freed.
///
/// Relaxed suffices: a segment is registered before any of its blocks is handed out, and a
/// thread asking about a block got it through some synchronisation that orders the two.
#[inline(always)]
pub fn contains(address: usize) -> bool {
    slot_of(address).is_some_and(|slot| slot.load(Ordering::Relaxed) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::segment::SEGMENT_SIZE;

    #[test]
    fn register_and_unregister_round_trip() {
        // A slot far from anything the process maps: bit 46 of the address space.
        let start = (1usize << 46) + 7 * SEGMENT_SIZE;
        assert!(!contains(start));
        assert!(register(start));
        assert!(contains(start));
        assert!(contains(start + SEGMENT_SIZE - 1));
        assert!(!contains(start + SEGMENT_SIZE));
        assert!(!contains(start - 1));
        unregister(start);
        assert!(!contains(start));
    }

    #[test]
    fn addresses_beyond_the_map_are_not_ours() {
        assert!(!contains(usize::MAX));
        assert!(!register(1usize << 48));
        assert!(!contains(1usize << 48));
    }

    #[test]
    fn foreign_pointers_are_not_ours() {
        let on_stack = 0u64;
        assert!(!contains(&on_stack as *const u64 as usize));
        let boxed = Box::new(5u32); // the system allocator in unit tests
        assert!(!contains(&*boxed as *const u32 as usize));
    }
}
