//! The live samples: for each sampled block not yet freed, its site and what it stands for, by
//! the block's address, so that its free takes it out of the estimates.
//!
//! A free reaches this table only for a block of a page flagged as holding samples (or a huge
//! block while profiling), and such frees come from every thread, so the table is split into
//! shards by address, each an open-addressing table under its own lock, with linear probing
//! and backward-shift deletion (no tombstones, so probe sequences stay short however long the
//! program runs).
//!
//! Invariants:
//! - **PS1**: a shard's slots lie in one mapping made on first use and never freed; they are
//!   read and written only under the shard's lock.
//! - **PS2**: a shard holds at most seven eighths of its slots, so every probe meets a free
//!   slot; a sample that would pass that is not kept (and counted as dropped).
//! - **PS3**: nothing here allocates through the allocator.

use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use core::sync::atomic::{AtomicU64, Ordering};

/// What a live sample stands for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The sampled block's start; 0 marks a free slot.
    pub address: usize,
    /// Its stack's site (`platform/unwind/sites.rs`), 0 if unknown.
    pub site: u32,
    /// Its estimated bytes: the size asked for over the chance of sampling it.
    pub bytes: f64,
    /// Its estimated allocations: one over that chance.
    pub count: f64,
}

const FREE: Sample = Sample {
    address: 0,
    site: 0,
    bytes: 0.0,
    count: 0.0,
};

const SHARDS: usize = 64;
/// Slots per shard: 2^10, so 2^16 slots in all (2 MiB reserved, resident as samples land on
/// them, which hashing spreads over every page), of which seven eighths can be live samples:
/// 57,344 at once, 28 GiB live at the default rate. (2^12 a shard made a program with one
/// site 6 MiB larger.)
const SLOTS: usize = 1 << 10;
const MOST_PER_SHARD: usize = SLOTS / 8 * 7;

struct Shard {
    /// Null until first use (PS1).
    slots: *mut Sample,
    live: usize,
}

// SAFETY: PS1: the slots are touched only under the shard's lock.
unsafe impl Send for Shard {}

static SHARD_LOCKS: [SpinLock<Shard>; SHARDS] = [const {
    SpinLock::new(
        Rank::ProfileSamples,
        Shard {
            slots: core::ptr::null_mut(),
            live: 0,
        },
    )
}; SHARDS];

/// Samples not kept because their shard was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn mix(address: usize) -> u64 {
    // Blocks are 8-aligned at least; Fibonacci hashing spreads neighbours apart.
    ((address >> 3) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn shard_of(address: usize) -> usize {
    (mix(address) >> 58) as usize % SHARDS
}

fn home(address: usize) -> usize {
    (mix(address) >> 20) as usize % SLOTS
}

impl Shard {
    /// The slots, mapped on first use; `None` if the mapping failed.
    fn slots(&mut self) -> Option<&mut [Sample; SLOTS]> {
        if self.slots.is_null() {
            let memory = crate::platform::os::reserve_metadata(SLOTS * size_of::<Sample>())?;
            // A fresh mapping is zero: every slot free.
            self.slots = memory.as_ptr().cast();
        }
        // SAFETY: PS1: the mapping holds SLOTS samples and we hold the shard's lock.
        Some(unsafe { &mut *self.slots.cast::<[Sample; SLOTS]>() })
    }

    /// The slot holding `address`, or the free slot where it would go (PS2: one exists).
    fn find(slots: &[Sample; SLOTS], address: usize) -> usize {
        let mut slot = home(address);
        while slots[slot].address != address && slots[slot].address != 0 {
            slot = (slot + 1) % SLOTS;
        }
        slot
    }
}

/// Keeps `sample`; false if its shard is full (or cannot be mapped) and it was dropped.
pub fn insert(sample: Sample) -> bool {
    debug_assert!(sample.address != 0);
    let mut shard = SHARD_LOCKS[shard_of(sample.address)].lock();
    let full = shard.live >= MOST_PER_SHARD;
    let Some(slots) = shard.slots().filter(|_| !full) else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let slot = Shard::find(slots, sample.address);
    let is_new = slots[slot].address == 0;
    slots[slot] = sample;
    if is_new {
        shard.live += 1;
    }
    true
}

/// Takes out the sample of the block at `address`, if it is one.
pub fn remove(address: usize) -> Option<Sample> {
    let mut shard = SHARD_LOCKS[shard_of(address)].lock();
    if shard.live == 0 {
        return None;
    }
    let slots = shard.slots()?;
    let mut hole = Shard::find(slots, address);
    let sample = slots[hole];
    if sample.address == 0 {
        return None;
    }
    // Backward-shift deletion: move up every later entry of the run that may sit in the hole
    // (its home is not cyclically within (hole, slot]), so no probe ever stops short.
    let mut slot = hole;
    loop {
        slot = (slot + 1) % SLOTS;
        let address = slots[slot].address;
        if address == 0 {
            break;
        }
        let distance_home = (slot + SLOTS - home(address)) % SLOTS;
        let distance_hole = (slot + SLOTS - hole) % SLOTS;
        if distance_home >= distance_hole {
            slots[hole] = slots[slot];
            hole = slot;
        }
    }
    slots[hole] = FREE;
    shard.live -= 1;
    Some(sample)
}

/// Samples dropped because their shard was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample(address: usize, site: u32) -> Sample {
        Sample {
            address,
            site,
            bytes: address as f64,
            count: 1.0,
        }
    }

    /// Against a model: random inserts and removes, with addresses chosen to collide (many
    /// share a home slot), keep exactly the model's samples.
    #[test]
    fn inserts_and_removes_agree_with_a_map() {
        let base = 0x7000_0000_0000usize;
        let mut model: HashMap<usize, u32> = HashMap::new();
        let mut state = 12345u64;
        for step in 0..60_000u32 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // A few hundred distinct addresses, 16 apart: long runs in each shard.
            let address = base + ((state >> 33) as usize % 700) * 16;
            if (state >> 20).is_multiple_of(3) {
                assert_eq!(remove(address).map(|s| s.site), model.remove(&address));
            } else {
                assert!(insert(sample(address, step)));
                model.insert(address, step);
            }
        }
        for (&address, &site) in &model {
            assert_eq!(remove(address).map(|s| s.site), Some(site));
        }
        for offset in 0..700 {
            assert!(remove(base + offset * 16).is_none());
        }
    }
}
