//! Options, from `TALLYMALLOC_*` environment variables or the API.
//!
//! Invariants: options are plain atomics, read on slow paths only. The environment is scanned
//! once, when the process first needs the allocator, by walking `environ` directly: no
//! `getenv` copies, no allocation. An unknown `TALLYMALLOC_` variable or a bad value gets one
//! warning line on stderr naming it and what is accepted, and the default stays in force.

use crate::diagnostics::{self, Line};
use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Default delay before a free page's memory goes back to the OS, as mimalloc does.
pub const DEFAULT_PURGE_DELAY_MILLIS: u64 = 10;
const MAX_PURGE_DELAY_MILLIS: u64 = 3_600_000;

static PURGE_DELAY_MILLIS: AtomicU64 = AtomicU64::new(DEFAULT_PURGE_DELAY_MILLIS);
static ON_ERROR: AtomicU8 = AtomicU8::new(OnError::Report as u8);
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// What to do when a program hands the allocator a pointer it never gave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnError {
    /// Print one line naming the call and the address, then carry on (the call does nothing).
    Report = 0,
    /// Print the line, then abort the process.
    Abort = 1,
}

/// How long a free page keeps its memory before it is returned to the OS (0: at once).
pub fn purge_delay_millis() -> u64 {
    PURGE_DELAY_MILLIS.load(Ordering::Relaxed)
}

/// Sets the purge delay; takes effect for pages freed from now on.
pub fn set_purge_delay_millis(millis: u64) {
    PURGE_DELAY_MILLIS.store(millis.min(MAX_PURGE_DELAY_MILLIS), Ordering::Relaxed);
}

/// What happens on an invalid pointer (`TALLYMALLOC_ON_ERROR`).
pub fn on_error() -> OnError {
    if ON_ERROR.load(Ordering::Relaxed) == OnError::Abort as u8 {
        OnError::Abort
    } else {
        OnError::Report
    }
}

pub fn set_on_error(choice: OnError) {
    ON_ERROR.store(choice as u8, Ordering::Relaxed);
}

const KNOWN: &[u8] = b"TALLYMALLOC_PURGE_DELAY, TALLYMALLOC_ON_ERROR, TALLYMALLOC_VERBOSE";

extern "C" {
    static environ: *const *const c_char;
}

/// Reads every `TALLYMALLOC_*` variable of the environment (once per process).
pub(crate) fn load_from_environment() {
    // The C runtime sets `environ` up before any code runs; we only read it.
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            apply_entry(CStr::from_ptr(*entry).to_bytes());
            entry = entry.add(1);
        }
    }
    if VERBOSE.load(Ordering::Relaxed) {
        print_options();
    }
}

fn apply_entry(entry: &[u8]) {
    let Some(rest) = entry.strip_prefix(b"TALLYMALLOC_") else {
        return;
    };
    let split = rest.iter().position(|&b| b == b'=').unwrap_or(rest.len());
    let (name, value) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let full_name = &entry[..b"TALLYMALLOC_".len() + split];
    match name {
        b"PURGE_DELAY" => match parse_millis(value) {
            Some(millis) => set_purge_delay_millis(millis),
            None => diagnostics::warn_bad_option(
                full_name,
                value,
                b"milliseconds as a whole number from 0 (return memory at once) to 3600000",
            ),
        },
        b"ON_ERROR" => match value {
            b"report" => set_on_error(OnError::Report),
            b"abort" => set_on_error(OnError::Abort),
            _ => diagnostics::warn_bad_option(full_name, value, b"report or abort"),
        },
        b"VERBOSE" => match value {
            b"0" => VERBOSE.store(false, Ordering::Relaxed),
            b"1" => VERBOSE.store(true, Ordering::Relaxed),
            _ => diagnostics::warn_bad_option(full_name, value, b"0 or 1"),
        },
        // Variables other faces read (the Python package, the command-line tool) are theirs.
        b"LIB" | b"PYTHON" | b"REPORT" => {}
        _ => {
            let mut line = Line::new();
            line.text(b"tallymalloc: ignoring unknown option ")
                .text(full_name)
                .text(b" (known: ")
                .text(KNOWN)
                .text(b")\n");
            line.write_to_stderr();
        }
    }
}

fn print_options() {
    let mut line = Line::new();
    line.text(b"tallymalloc: options in force: TALLYMALLOC_PURGE_DELAY=")
        .decimal(purge_delay_millis())
        .text(b" TALLYMALLOC_ON_ERROR=")
        .text(match on_error() {
            OnError::Report => b"report",
            OnError::Abort => b"abort",
        })
        .text(b" TALLYMALLOC_VERBOSE=1\n");
    line.write_to_stderr();
}

fn parse_millis(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 7 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = text
        .iter()
        .fold(0u64, |value, &digit| value * 10 + (digit - b'0') as u64);
    (value <= MAX_PURGE_DELAY_MILLIS).then_some(value)
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

    #[test]
    fn entries_set_options_and_bad_ones_keep_defaults() {
        apply_entry(b"TALLYMALLOC_ON_ERROR=abort");
        assert_eq!(on_error(), OnError::Abort);
        apply_entry(b"TALLYMALLOC_ON_ERROR=explode");
        assert_eq!(on_error(), OnError::Abort);
        apply_entry(b"TALLYMALLOC_ON_ERROR=report");
        assert_eq!(on_error(), OnError::Report);
        apply_entry(b"TALLYMALLOC_PURGE_DELAY=soon");
        assert_eq!(purge_delay_millis(), DEFAULT_PURGE_DELAY_MILLIS);
        apply_entry(b"OTHER_VARIABLE=1");
        apply_entry(b"TALLYMALLOC_NO_SUCH_THING=1");
        apply_entry(b"TALLYMALLOC_VERBOSE");
    }
}
