//! Fault injection: makes the OS layer's mapping calls (`mmap`, and `mremap` that grows) fail
//! on purpose, so tests can show that every allocation then fails cleanly (NULL and ENOMEM in
//! C, `None` in Rust, a failed `realloc` keeping its block) and that the allocator recovers
//! when the faults stop.
//!
//! `TALLYMALLOC_FAULT=mmap:after=N[,for=M]` lets N mapping calls succeed, then fails the next M
//! (all of them without `for`); `TALLYMALLOC_FAULT=mmap:P%` fails P percent of them, from a
//! fixed pseudo-random sequence. [`set_plan`] does the same from Rust.
//!
//! Invariants:
//! - **F1**: with no plan (the default) [`should_fail`] is one relaxed load of `ACTIVE`; it
//!   is called only on the way to a system call, never on a fast path.
//! - **F2**: nothing here allocates.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// When mapping calls fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// Let `after` calls succeed, then fail `count` of them (`u64::MAX`: all that follow).
    After { after: u64, count: u64 },
    /// Fail this many calls in a hundred.
    Percent(u8),
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Mapping calls seen since the plan was set.
static CALLS: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static AFTER: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
/// 0 unless the plan is a percentage.
static PERCENT: AtomicU64 = AtomicU64::new(0);

/// Sets the plan (or, with `None`, turns faults off) and starts counting calls anew.
pub fn set_plan(plan: Option<FaultPlan>) {
    ACTIVE.store(false, Ordering::SeqCst);
    CALLS.store(0, Ordering::SeqCst);
    match plan {
        None => return,
        Some(FaultPlan::After { after, count }) => {
            AFTER.store(after, Ordering::SeqCst);
            COUNT.store(count, Ordering::SeqCst);
            PERCENT.store(0, Ordering::SeqCst);
        }
        Some(FaultPlan::Percent(percent)) => {
            PERCENT.store(percent.min(100) as u64, Ordering::SeqCst);
        }
    }
    ACTIVE.store(true, Ordering::SeqCst);
}

/// Mapping calls failed on purpose since the process started.
pub fn injected_failures() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// Whether the mapping call about to be made must fail (F1).
#[inline]
pub fn should_fail() -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let percent = PERCENT.load(Ordering::Relaxed);
    let fail = if percent > 0 {
        // A fixed sequence (SplitMix64 of the call number), so runs repeat.
        let mut z = call.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 100 < percent
    } else {
        let after = AFTER.load(Ordering::Relaxed);
        call >= after && call - after < COUNT.load(Ordering::Relaxed)
    };
    if fail {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
    fail
}

/// Parses the value of `TALLYMALLOC_FAULT`: `mmap:after=N[,for=M]` or `mmap:P%`.
pub fn parse(value: &[u8]) -> Option<FaultPlan> {
    let rest = value.strip_prefix(b"mmap:")?;
    if let Some(percent) = rest.strip_suffix(b"%") {
        let percent = number(percent)?;
        return (percent <= 100).then_some(FaultPlan::Percent(percent as u8));
    }
    let rest = rest.strip_prefix(b"after=")?;
    let (after, count) = match rest.iter().position(|&b| b == b',') {
        Some(comma) => (
            number(&rest[..comma])?,
            number(rest[comma + 1..].strip_prefix(b"for=")?)?,
        ),
        None => (number(rest)?, u64::MAX),
    };
    Some(FaultPlan::After { after, count })
}

fn number(text: &[u8]) -> Option<u64> {
    crate::platform::text::parse_decimal(text, u64::MAX / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse(b"mmap:after=10"),
            Some(FaultPlan::After {
                after: 10,
                count: u64::MAX
            })
        );
        assert_eq!(
            parse(b"mmap:after=0,for=5"),
            Some(FaultPlan::After { after: 0, count: 5 })
        );
        assert_eq!(parse(b"mmap:25%"), Some(FaultPlan::Percent(25)));
        for bad in [
            &b"mmap:101%"[..],
            b"mmap:",
            b"munmap:after=1",
            b"mmap:after=x",
            b"mmap:after=1,5",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
