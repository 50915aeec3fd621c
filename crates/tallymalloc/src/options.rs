//! Options, from `TALLYMALLOC_*` environment variables or the API.
//!
//! Invariants: options are plain atomics, read on slow paths only; the environment is read
//! with `getenv` (which does not allocate) once, when the first heap starts, and a bad value is
//! reported on stderr and ignored, keeping the default.

use crate::diagnostics;
use core::ffi::CStr;
use core::sync::atomic::{AtomicU64, Ordering};

/// Default delay before a free page's memory goes back to the OS, as mimalloc does.
pub const DEFAULT_PURGE_DELAY_MILLIS: u64 = 10;

static PURGE_DELAY_MILLIS: AtomicU64 = AtomicU64::new(DEFAULT_PURGE_DELAY_MILLIS);

/// How long a free page keeps its memory before it is returned to the OS (0: at once).
pub fn purge_delay_millis() -> u64 {
    PURGE_DELAY_MILLIS.load(Ordering::Relaxed)
}

/// Sets the purge delay; takes effect for pages freed from now on.
pub fn set_purge_delay_millis(millis: u64) {
    PURGE_DELAY_MILLIS.store(millis, Ordering::Relaxed);
}

pub(crate) fn load_from_environment() {
    if let Some(value) = environment(c"TALLYMALLOC_PURGE_DELAY") {
        match parse_millis(value.to_bytes()) {
            Some(millis) => set_purge_delay_millis(millis),
            None => diagnostics::warn_bad_option(
                b"TALLYMALLOC_PURGE_DELAY",
                value.to_bytes(),
                b"milliseconds as a whole number from 0 (return memory at once) to 3600000",
            ),
        }
    }
}

fn environment(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: getenv reads the environment without allocating; the string it returns lives
    // as long as the environment entry, which we only read at start-up.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        None
    } else {
        // SAFETY: getenv returns a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(value) })
    }
}

fn parse_millis(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 7 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = text
        .iter()
        .fold(0u64, |value, &digit| value * 10 + (digit - b'0') as u64);
    (value <= 3_600_000).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_millis_accepts_only_bounded_whole_numbers() {
        assert_eq!(parse_millis(b"0"), Some(0));
        assert_eq!(parse_millis(b"250"), Some(250));
        assert_eq!(parse_millis(b"3600000"), Some(3_600_000));
        assert_eq!(parse_millis(b"3600001"), None);
        assert_eq!(parse_millis(b""), None);
        assert_eq!(parse_millis(b"-1"), None);
        assert_eq!(parse_millis(b"10ms"), None);
        assert_eq!(parse_millis(b"99999999999999999999"), None);
    }
}
