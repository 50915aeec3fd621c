//! The estimates by site: allocations and bytes allocated so far, bytes live now, and bytes
//! live at the peak, all as sums of the samples' weights (`sampler.rs`).
//!
//! "At the peak" is at the moment the estimated live bytes of the whole process were highest.
//! Rather than copy every site's figure at each new peak, a site saves its live figure only
//! when it next changes after a peak: a site that has not changed since the last peak still
//! holds then what it holds now. Each new peak starts a new generation, and a site's saved
//! figure is the one for the peak if it was saved in the current generation.
//!
//! Invariants:
//! - **PT1**: the table lies in one mapping made on first use and never freed, with an entry
//!   per possible site (site numbers are below `sites::CAPACITY + 1`), and is read and written
//!   only under `TOTALS`'s lock.
//! - **PT2**: a site's `peak_*` figures are its live figures at the last peak if
//!   `peak_generation == generation`; otherwise its live figures are also those of the peak.
//! - **PT3**: nothing here allocates through the allocator.

use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use crate::platform::unwind::sites::CAPACITY;

/// What the profile estimates for one site.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteEstimate {
    /// The site (`platform/unwind/sites.rs`); 0 gathers the samples whose stack is unknown.
    pub site: u32,
    pub allocations: f64,
    pub allocated_bytes: f64,
    pub live_blocks: f64,
    pub live_bytes: f64,
    pub peak_blocks: f64,
    pub peak_bytes: f64,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    allocations: f64,
    allocated_bytes: f64,
    live_blocks: f64,
    live_bytes: f64,
    peak_blocks: f64,
    peak_bytes: f64,
    peak_generation: u64,
}

/// Entries: one per site and one for site 0.
const ENTRIES: usize = CAPACITY + 1;

struct Totals {
    /// Null until first use (PT1).
    entries: *mut Entry,
    /// The highest site with an entry in use.
    highest: u32,
    live_bytes: f64,
    peak_bytes: f64,
    generation: u64,
    samples: u64,
}

// SAFETY: PT1: the entries are touched only under the lock.
unsafe impl Send for Totals {}

static TOTALS: SpinLock<Totals> = SpinLock::new(
    Rank::ProfileTotals,
    Totals {
        entries: core::ptr::null_mut(),
        highest: 0,
        live_bytes: 0.0,
        peak_bytes: 0.0,
        generation: 0,
        samples: 0,
    },
);

impl Totals {
    /// The entries, mapped on first use (PT1).
    fn entries(&mut self) -> Option<&mut [Entry; ENTRIES]> {
        if self.entries.is_null() {
            let memory = crate::platform::os::reserve_metadata(ENTRIES * size_of::<Entry>())?;
            // A fresh mapping is zero, which is an unused entry.
            self.entries = memory.as_ptr().cast();
        }
        // SAFETY: PT1: the mapping holds ENTRIES entries and we hold the lock.
        Some(unsafe { &mut *self.entries.cast::<[Entry; ENTRIES]>() })
    }

    /// Changes `site`'s live figures by `blocks` and `bytes` (negative for a free), saving
    /// the peak's figures first (PT2), and starts a generation if the total passes the peak.
    fn change_live(&mut self, site: u32, blocks: f64, bytes: f64) -> Option<&mut Entry> {
        let generation = self.generation;
        self.live_bytes += bytes;
        let new_peak = self.live_bytes > self.peak_bytes;
        if new_peak {
            self.peak_bytes = self.live_bytes;
            self.generation += 1;
        }
        self.highest = self.highest.max(site);
        let entry = &mut self.entries()?[site as usize];
        if entry.peak_generation != generation {
            entry.peak_blocks = entry.live_blocks;
            entry.peak_bytes = entry.live_bytes;
            entry.peak_generation = generation;
        }
        entry.live_blocks += blocks;
        entry.live_bytes += bytes;
        Some(entry)
    }
}

/// A sample of `site` was allocated, standing for `count` allocations of `bytes` in all.
pub fn allocated(site: u32, count: f64, bytes: f64) {
    let mut totals = TOTALS.lock();
    totals.samples += 1;
    if let Some(entry) = totals.change_live(site, count, bytes) {
        entry.allocations += count;
        entry.allocated_bytes += bytes;
    }
}

/// A sample of `site` was freed.
pub fn freed(site: u32, count: f64, bytes: f64) {
    TOTALS.lock().change_live(site, -count, -bytes);
}

/// The samples taken so far, and the estimated live bytes now and at the peak.
pub fn summary() -> (u64, f64, f64) {
    let totals = TOTALS.lock();
    (totals.samples, totals.live_bytes, totals.peak_bytes)
}

/// Calls `each` with the estimates of every site that has had a sample, in site order, under
/// the lock: `each` must not allocate through the allocator.
pub fn for_each_site(mut each: impl FnMut(&SiteEstimate)) {
    let mut totals = TOTALS.lock();
    let (highest, generation) = (totals.highest as usize, totals.generation);
    let Some(entries) = totals.entries() else {
        return;
    };
    for (site, entry) in entries[..=highest].iter().enumerate() {
        if entry.allocations == 0.0 {
            continue;
        }
        // PT2.
        let at_peak = entry.peak_generation == generation;
        each(&SiteEstimate {
            site: site as u32,
            allocations: entry.allocations,
            allocated_bytes: entry.allocated_bytes,
            live_blocks: entry.live_blocks,
            live_bytes: entry.live_bytes,
            peak_blocks: if at_peak {
                entry.peak_blocks
            } else {
                entry.live_blocks
            },
            peak_bytes: if at_peak {
                entry.peak_bytes
            } else {
                entry.live_bytes
            },
        });
    }
}

/// Sites that have had a sample.
pub fn site_count() -> usize {
    let mut count = 0;
    for_each_site(|_| count += 1);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(site: u32) -> SiteEstimate {
        let mut found = SiteEstimate::default();
        for_each_site(|e| {
            if e.site == site {
                found = *e;
            }
        });
        found
    }

    /// The figures at the peak are those of the moment the total was highest, whatever
    /// happened after. (Sites far above any the other tests intern.)
    #[test]
    fn the_peak_keeps_each_site_as_it_was() {
        let (a, b) = (CAPACITY as u32 - 2, CAPACITY as u32 - 1);
        let (_, live, peak) = summary();
        // Start from a fresh peak of our own: raise the total well above any earlier peak.
        let lift = (peak - live).max(0.0) + 1e12;
        allocated(a, 1.0, lift);
        allocated(b, 2.0, 1e9);
        freed(a, 1.0, lift);
        // Now a is 0 and b holds 1e9; the peak had a = lift and b = 0, then a = lift, b = 1e9.
        assert_eq!(estimate(a).peak_bytes, lift);
        assert_eq!(estimate(b).peak_bytes, 1e9);
        assert_eq!(estimate(a).live_bytes, 0.0);
        allocated(b, 1.0, 5e8);
        // Not a new peak (1.5e9 < lift + 1e9): the peak figures stand.
        assert_eq!(estimate(b).peak_bytes, 1e9);
        assert_eq!(estimate(b).live_bytes, 1.5e9);
        assert_eq!(estimate(b).allocations, 3.0);
        assert_eq!(estimate(b).allocated_bytes, 1.5e9);
        freed(b, 3.0, 1.5e9);
    }
}
