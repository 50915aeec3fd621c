//! The purge delay in force: how long freed memory (free pages, cached huge mappings) waits
//! before it goes back to the OS.
//!
//! It starts at the configured delay (`TALLYMALLOC_PURGE_DELAY`, 10 ms by default), so that a
//! program that frees and goes quiet shrinks at once. But memory given back and wanted again
//! soon after costs a page fault per 4 KiB for nothing (a program whose data comes and goes
//! every few tens of milliseconds faults far more than one that keeps its memory:
//! docs/MEASUREMENTS.md, "The purge delay"). So a refault doubles the delay in force (once per delay in force: the
//! pages of one burst are one refault), up to `1 << MAX_DOUBLINGS` times the configured one,
//! and each second without one halves it again.
//!
//! Invariants:
//! - **PP1**: the state is two process-wide atomics, read and written relaxed and without
//!   read-modify-write loops: a lost update only delays an adaptation by one refault or one
//!   second, and the delay in force always lies between the configured one and its maximum.

use crate::policy::options;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The delay in force is at most the configured one times `1 << MAX_DOUBLINGS` (640 ms by
/// default).
const MAX_DOUBLINGS: u32 = 6;

/// Memory wanted again within this many delays in force of going back to the OS counts as a
/// refault: keeping it that much longer would have saved the faults.
const REFAULT_WINDOW_DELAYS: u64 = 8;

/// Without a refault for this long, the delay in force halves.
const CALM_MILLIS: u64 = 1000;

static DOUBLINGS: AtomicU32 = AtomicU32::new(0);
/// When the delay last changed, in `os::monotonic_millis` time.
static CHANGED_AT: AtomicU64 = AtomicU64::new(0);

/// The delay in force, now: between the configured delay and `1 << 6` times it. Memory that
/// the OS gets back and the program wants again soon after lengthens it; a second without
/// that shortens it.
pub fn purge_delay_in_force_millis() -> u64 {
    millis(crate::platform::os::monotonic_millis())
}

/// The delay in force at `now` (0 when the configured delay is 0: purge at once, always).
pub fn millis(now: u64) -> u64 {
    let pace = Pace::load();
    let calmer = pace.calmed(now);
    if calmer != pace {
        calmer.store();
    }
    calmer.delay(options::purge_delay_millis())
}

/// Memory that went back to the OS at `released_at` is wanted again at `now`: lengthens the
/// delay if that came soon.
pub fn note_wanted_again(released_at: u64, now: u64) {
    let pace = Pace::load();
    let slower = pace.wanted_again(options::purge_delay_millis(), released_at, now);
    if slower != pace {
        slower.store();
    }
}

/// The adaptation's state, apart from the atomics (PP1), so it can be tested on made-up times.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Pace {
    doublings: u32,
    changed_at: u64,
}

impl Pace {
    fn load() -> Pace {
        Pace {
            doublings: DOUBLINGS.load(Ordering::Relaxed),
            changed_at: CHANGED_AT.load(Ordering::Relaxed),
        }
    }

    fn store(self) {
        DOUBLINGS.store(self.doublings, Ordering::Relaxed);
        CHANGED_AT.store(self.changed_at, Ordering::Relaxed);
    }

    fn delay(self, configured: u64) -> u64 {
        configured << self.doublings
    }

    /// One halving per calm second (applied when asked, so a second at a time).
    fn calmed(self, now: u64) -> Pace {
        if self.doublings > 0 && now.saturating_sub(self.changed_at) > CALM_MILLIS {
            Pace {
                doublings: self.doublings - 1,
                changed_at: now,
            }
        } else {
            self
        }
    }

    fn wanted_again(self, configured: u64, released_at: u64, now: u64) -> Pace {
        let delay = self.delay(configured);
        let soon = now.saturating_sub(released_at) <= delay * REFAULT_WINDOW_DELAYS;
        let settled = now.saturating_sub(self.changed_at) >= delay;
        if soon && settled && delay > 0 && self.doublings < MAX_DOUBLINGS {
            Pace {
                doublings: self.doublings + 1,
                changed_at: now,
            }
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refaults_lengthen_the_delay_and_calm_shortens_it() {
        let base = 10;
        let mut pace = Pace {
            doublings: 0,
            changed_at: 0,
        };
        pace = pace.wanted_again(base, 1_000, 1_000 + base * REFAULT_WINDOW_DELAYS + 1);
        assert_eq!(pace.delay(base), base, "wanted again too late to count");
        pace = pace.wanted_again(base, 1_000, 1_005);
        assert_eq!(pace.delay(base), base * 2);
        pace = pace.wanted_again(base, 1_000, 1_006);
        assert_eq!(
            pace.delay(base),
            base * 2,
            "one doubling per delay in force"
        );
        let mut now = 1_005;
        for _ in 0..2 * MAX_DOUBLINGS {
            now += pace.delay(base);
            pace = pace.wanted_again(base, now - 1, now);
        }
        assert_eq!(pace.delay(base), base << MAX_DOUBLINGS, "capped");
        let capped_at = pace.changed_at;
        let calm = capped_at + CALM_MILLIS;
        assert_eq!(pace.calmed(calm), pace, "not calm for long enough");
        pace = pace.calmed(calm + 1);
        assert_eq!(pace.delay(base), base << (MAX_DOUBLINGS - 1));
        assert_eq!(pace.calmed(calm + 2), pace, "one halving per second");
        now = calm + 1;
        for _ in 0..2 * MAX_DOUBLINGS {
            now += CALM_MILLIS + 1;
            pace = pace.calmed(now);
        }
        assert_eq!(pace.delay(base), base, "back to the configured delay");
    }

    #[test]
    fn a_delay_of_zero_stays_zero() {
        let pace = Pace {
            doublings: 0,
            changed_at: 0,
        };
        assert_eq!(pace.wanted_again(0, 5, 5).delay(0), 0);
    }
}
