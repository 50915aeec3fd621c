//! Options, from `TALLYMALLOC_*` environment variables or the API.
//!
//! Invariants: options are plain atomics, read on slow paths only. The environment is scanned
//! once, when the process first needs the allocator, by walking `environ` directly: no
//! `getenv` copies, no allocation. An unknown `TALLYMALLOC_` variable or a bad value gets one
//! warning line on stderr naming it and what is accepted, and the default stays in force.
//! [`OPTION_NAMES`] lists every name the parser knows; a unit test holds the two together.

use crate::platform::text::{parse_decimal, Line};
use crate::policy::domain::{self, OnMismatch};
use core::cell::UnsafeCell;
use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Default delay before a free page's memory goes back to the OS, as mimalloc does.
pub const DEFAULT_PURGE_DELAY_MILLIS: u64 = 10;
const MAX_PURGE_DELAY_MILLIS: u64 = 3_600_000;

static PURGE_DELAY_MILLIS: AtomicU64 = AtomicU64::new(DEFAULT_PURGE_DELAY_MILLIS);
/// `OnError` as u8, or `ON_ERROR_UNSET` until the program or its environment chooses.
static ON_ERROR: AtomicU8 = AtomicU8::new(ON_ERROR_UNSET);
const ON_ERROR_UNSET: u8 = u8::MAX;
static VERBOSE: AtomicBool = AtomicBool::new(false);
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);
static DEBUG: AtomicBool = AtomicBool::new(false);
static QUARANTINE_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_QUARANTINE_BYTES);
/// Debug mode's quarantine without `TALLYMALLOC_QUARANTINE`.
const DEFAULT_QUARANTINE_BYTES: usize = 16 << 20;
static DEBUG_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_DEBUG_DEPTH);
/// Frames debug mode keeps of a stack without `TALLYMALLOC_DEBUG_DEPTH`.
const DEFAULT_DEBUG_DEPTH: usize = 24;

static PROFILE: AtomicBool = AtomicBool::new(false);
static PROFILE_SAMPLE_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_PROFILE_SAMPLE_BYTES);
/// The mean bytes allocated between two profile samples without
/// `TALLYMALLOC_PROFILE_SAMPLE_BYTES` (tcmalloc's and Go's default too).
pub const DEFAULT_PROFILE_SAMPLE_BYTES: usize = 512 << 10;
/// The largest mean the option takes: 1 TiB.
pub const MAX_PROFILE_SAMPLE_BYTES: usize = 1 << 40;

/// Whether `TALLYMALLOC_PROFILE=1` asks for sampled heap profiles.
pub fn profile_requested() -> bool {
    PROFILE.load(Ordering::Relaxed)
}

/// The mean bytes allocated between two samples (`TALLYMALLOC_PROFILE_SAMPLE_BYTES`).
pub fn profile_sample_bytes() -> usize {
    PROFILE_SAMPLE_BYTES.load(Ordering::Relaxed)
}

/// Sets the mean bytes between samples: 1 to [`MAX_PROFILE_SAMPLE_BYTES`]; false, and no
/// change, for anything else.
pub fn set_profile_sample_bytes(bytes: usize) -> bool {
    if bytes == 0 || bytes > MAX_PROFILE_SAMPLE_BYTES {
        return false;
    }
    PROFILE_SAMPLE_BYTES.store(bytes, Ordering::Relaxed);
    true
}

/// The `PATH` of `TALLYMALLOC_PROFILE_FILE=PATH` (empty when unset).
pub fn profile_path() -> &'static [u8] {
    PROFILE_PATH.get()
}

/// Whether huge blocks' mappings, and the segments of medium and large blocks, ask the kernel
/// for transparent huge pages (`TALLYMALLOC_HUGE_PAGES`, off by default: docs/MEASUREMENTS.md,
/// "Huge blocks" and "Transparent huge pages for segments").
pub fn huge_pages() -> bool {
    HUGE_PAGES.load(Ordering::Relaxed)
}

/// Sets whether huge blocks' mappings, and medium and large segments, made or laid out from
/// now on ask for transparent huge pages.
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

/// Whether `TALLYMALLOC_DEBUG=1` asks for debug mode (read when the mode is decided).
pub fn debug_requested() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Bytes of freed blocks debug mode holds back (`TALLYMALLOC_QUARANTINE`).
pub fn quarantine_bytes() -> usize {
    QUARANTINE_BYTES.load(Ordering::Relaxed)
}

/// Frames of each stack debug mode captures (`TALLYMALLOC_DEBUG_DEPTH`, 1 to 64): deeper stacks
/// name more callers in reports and cost more time per allocation and free.
pub fn debug_depth() -> usize {
    DEBUG_DEPTH.load(Ordering::Relaxed)
}

/// What to do when a program hands the allocator a pointer it never gave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnError {
    /// Print one line naming the call and the address, then carry on (the call does nothing).
    Report = 0,
    /// Print the line, then abort the process.
    Abort = 1,
}

/// How long a free page keeps its memory before it is returned to the OS (0: at once), as
/// configured; the delay in force adapts above it ([`crate::purge_delay_in_force_millis`]).
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

/// What happens on an error debug mode finds: as chosen, or else abort (as CPython's debug
/// hooks do), since debug mode is asked for to stop at the first misuse.
pub fn on_error_in_debug() -> OnError {
    match ON_ERROR.load(Ordering::Relaxed) {
        ON_ERROR_UNSET => OnError::Abort,
        _ => on_error(),
    }
}

/// Every `TALLYMALLOC_*` variable the parser knows, in the order the documentation lists them:
/// the library's options, then those other faces read (the Python package's start-up hook and
/// `tallymalloc run`), which the library accepts and leaves alone. The command's
/// `tallymalloc environment` documents exactly these (tested), so docs and parser cannot drift.
pub const OPTION_NAMES: &[&str] = &[
    "TALLYMALLOC_PURGE_DELAY",
    "TALLYMALLOC_ON_ERROR",
    "TALLYMALLOC_ON_MISMATCH",
    "TALLYMALLOC_STATS",
    "TALLYMALLOC_STATS_INTERVAL",
    "TALLYMALLOC_DEBUG",
    "TALLYMALLOC_QUARANTINE",
    "TALLYMALLOC_DEBUG_DEPTH",
    "TALLYMALLOC_REPORT",
    "TALLYMALLOC_PROFILE",
    "TALLYMALLOC_PROFILE_SAMPLE_BYTES",
    "TALLYMALLOC_PROFILE_FILE",
    "TALLYMALLOC_FAULT",
    "TALLYMALLOC_VERBOSE",
    "TALLYMALLOC_HUGE_PAGES",
    "TALLYMALLOC_SECURE",
    "TALLYMALLOC_PYTHON",
    "TALLYMALLOC_LIB",
];

/// Where the exit-time stats go (`TALLYMALLOC_STATS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsAtExit {
    Off,
    /// `1`: the human table, on stderr.
    Table,
    /// `json:PATH`: the JSON, written to PATH (`%p` in it becomes the process id).
    Json,
}

static STATS_AT_EXIT: AtomicU8 = AtomicU8::new(0);
static STATS_INTERVAL_MILLIS: AtomicU64 = AtomicU64::new(0);
const MAX_PATH: usize = 4096;

struct StatsPath {
    bytes: UnsafeCell<[u8; MAX_PATH]>,
    length: AtomicUsize,
}
// The path is written while options load (one thread, under the process set-up lock).
// SAFETY: `length` is published with release ordering after the write; reads follow it.
unsafe impl Sync for StatsPath {}
static STATS_PATH: StatsPath = StatsPath {
    bytes: UnsafeCell::new([0; MAX_PATH]),
    length: AtomicUsize::new(0),
};
/// `TALLYMALLOC_PROFILE_FILE=PATH`: where the profile is written at exit.
static PROFILE_PATH: StatsPath = StatsPath {
    bytes: UnsafeCell::new([0; MAX_PATH]),
    length: AtomicUsize::new(0),
};
/// `TALLYMALLOC_REPORT=PATH`: where debug mode writes its JSON leak report at exit.
static REPORT_PATH: StatsPath = StatsPath {
    bytes: UnsafeCell::new([0; MAX_PATH]),
    length: AtomicUsize::new(0),
};

impl StatsPath {
    fn get(&'static self) -> &'static [u8] {
        let length = self.length.load(Ordering::Acquire);
        // SAFETY: the bytes before `length` were written before it was published; they never change.
        unsafe { &(&*self.bytes.get())[..length] }
    }

    /// Stores `path`; false if it is empty, too long or holds a NUL.
    fn set(&'static self, path: &[u8]) -> bool {
        if path.is_empty() || path.len() > MAX_PATH || path.contains(&0) {
            return false;
        }
        // SAFETY: see above: options load on one thread, before readers look.
        unsafe { (&mut *self.bytes.get())[..path.len()].copy_from_slice(path) };
        self.length.store(path.len(), Ordering::Release);
        true
    }
}

/// The `PATH` of `TALLYMALLOC_REPORT=PATH` (empty when unset).
pub fn report_path() -> &'static [u8] {
    REPORT_PATH.get()
}

pub fn stats_at_exit() -> StatsAtExit {
    match STATS_AT_EXIT.load(Ordering::Relaxed) {
        1 => StatsAtExit::Table,
        2 => StatsAtExit::Json,
        _ => StatsAtExit::Off,
    }
}

/// The `PATH` of `TALLYMALLOC_STATS=json:PATH`.
pub fn stats_path() -> &'static [u8] {
    STATS_PATH.get()
}

/// Milliseconds between timeline samples (`TALLYMALLOC_STATS_INTERVAL`); 0 for none.
pub fn stats_interval_millis() -> u64 {
    STATS_INTERVAL_MILLIS.load(Ordering::Relaxed)
}

fn set_stats_option(value: &[u8]) -> bool {
    match value {
        b"0" => STATS_AT_EXIT.store(0, Ordering::Relaxed),
        b"1" => STATS_AT_EXIT.store(1, Ordering::Relaxed),
        _ => {
            let Some(path) = value.strip_prefix(b"json:") else {
                return false;
            };
            if !STATS_PATH.set(path) {
                return false;
            }
            STATS_AT_EXIT.store(2, Ordering::Relaxed);
        }
    }
    true
}

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
    if !apply_option(name, full_name, value) {
        let mut line = Line::new();
        line.text(b"tallymalloc: ignoring unknown option ")
            .text(full_name)
            .text(b" (known, after TALLYMALLOC_: ");
        // Without the prefix, the list fits in one line.
        for (index, known) in OPTION_NAMES.iter().enumerate() {
            let short = &known.as_bytes()[b"TALLYMALLOC_".len()..];
            line.text(if index == 0 { b"" } else { b", " }).text(short);
        }
        line.text(b")\n").write_to_stderr();
    }
}

/// Applies option `name` (without the prefix; `full_name` with it) set to `value`, warning about
/// a bad value; false if no option has that name.
fn apply_option(name: &[u8], full_name: &[u8], value: &[u8]) -> bool {
    match name {
        b"PURGE_DELAY" => match parse_millis(value) {
            Some(millis) => set_purge_delay_millis(millis),
            None => warn_bad_option(
                full_name,
                value,
                b"milliseconds as a whole number from 0 (return memory at once) to 3600000",
            ),
        },
        b"ON_ERROR" => match value {
            b"report" => set_on_error(OnError::Report),
            b"abort" => set_on_error(OnError::Abort),
            _ => warn_bad_option(full_name, value, b"report or abort"),
        },
        b"ON_MISMATCH" => match value {
            b"warn" => domain::set_on_mismatch(OnMismatch::Warn),
            b"abort" => domain::set_on_mismatch(OnMismatch::Abort),
            b"ignore" => domain::set_on_mismatch(OnMismatch::Ignore),
            _ => warn_bad_option(full_name, value, b"warn, abort or ignore"),
        },
        b"STATS" => {
            if !set_stats_option(value) {
                warn_bad_option(
                    full_name,
                    value,
                    b"1 (a table on stderr at exit), json:PATH (JSON to PATH at exit) or 0",
                );
            }
        }
        b"STATS_INTERVAL" => match parse_millis(value) {
            Some(millis) => STATS_INTERVAL_MILLIS.store(millis, Ordering::Relaxed),
            None => warn_bad_option(
                full_name,
                value,
                b"milliseconds between timeline samples, a whole number up to 3600000",
            ),
        },
        b"FAULT" => match crate::platform::fault::parse(value) {
            Some(plan) => crate::platform::fault::set_plan(Some(plan)),
            None => warn_bad_option(
                full_name,
                value,
                b"mmap:after=N[,for=M] (fail mapping calls after N of them) or mmap:P% (fail P in 100)",
            ),
        },
        b"DEBUG" => match value {
            b"1" => DEBUG.store(true, Ordering::Relaxed),
            b"0" => DEBUG.store(false, Ordering::Relaxed),
            _ => warn_bad_option(full_name, value, b"1 (debug mode) or 0"),
        },
        b"SECURE" => match value {
            b"1" => crate::policy::secure::enable(),
            b"0" => {}
            _ => warn_bad_option(full_name, value, b"1 (secure mode) or 0"),
        },
        b"QUARANTINE" => match parse_bytes(value) {
            Some(bytes) => QUARANTINE_BYTES.store(bytes, Ordering::Relaxed),
            None => warn_bad_option(
                full_name,
                value,
                b"bytes of freed blocks debug mode holds back, a whole number up to 2^40",
            ),
        },
        b"DEBUG_DEPTH" => match parse_decimal(value, crate::platform::unwind::MAX_DEPTH as u64) {
            Some(depth) if depth > 0 => DEBUG_DEPTH.store(depth as usize, Ordering::Relaxed),
            _ => warn_bad_option(
                full_name,
                value,
                b"frames kept of each stack debug mode captures, 1 to 64",
            ),
        },
        b"PROFILE" => match value {
            b"1" => PROFILE.store(true, Ordering::Relaxed),
            b"0" => PROFILE.store(false, Ordering::Relaxed),
            _ => warn_bad_option(full_name, value, b"1 (sampled heap profiles) or 0"),
        },
        b"PROFILE_SAMPLE_BYTES" => {
            if !parse_bytes(value).is_some_and(set_profile_sample_bytes) {
                warn_bad_option(
                    full_name,
                    value,
                    b"mean bytes allocated between two samples, a whole number from 1 to 2^40",
                );
            }
        }
        b"PROFILE_FILE" => {
            if !PROFILE_PATH.set(value) {
                warn_bad_option(
                    full_name,
                    value,
                    b"a file for the profile written at exit (%p is the process id)",
                );
            }
        }
        b"HUGE_PAGES" => match value {
            b"1" => HUGE_PAGES.store(true, Ordering::Relaxed),
            b"0" => HUGE_PAGES.store(false, Ordering::Relaxed),
            _ => warn_bad_option(
                full_name,
                value,
                b"1 (ask for transparent huge pages behind huge blocks) or 0",
            ),
        },
        b"VERBOSE" => match value {
            b"0" => VERBOSE.store(false, Ordering::Relaxed),
            b"1" => VERBOSE.store(true, Ordering::Relaxed),
            _ => warn_bad_option(full_name, value, b"0 or 1"),
        },
        // Variables other faces read (the Python package, the command-line tool) are theirs.
        b"REPORT" => {
            if !REPORT_PATH.set(value) {
                warn_bad_option(
                    full_name,
                    value,
                    b"a file for debug mode's JSON leak report (%p is the process id)",
                );
            }
        }
        b"LIB" | b"PYTHON" => {}
        _ => return false,
    }
    true
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
        .text(b" TALLYMALLOC_ON_MISMATCH=")
        .text(match domain::on_mismatch() {
            OnMismatch::Warn => b"warn".as_slice(),
            OnMismatch::Abort => b"abort",
            OnMismatch::Ignore => b"ignore",
        })
        .text(b" TALLYMALLOC_STATS=")
        .text(match stats_at_exit() {
            StatsAtExit::Off => b"0".as_slice(),
            StatsAtExit::Table => b"1",
            StatsAtExit::Json => b"json:",
        })
        .text(if stats_at_exit() == StatsAtExit::Json {
            stats_path()
        } else {
            b""
        })
        .text(b" TALLYMALLOC_STATS_INTERVAL=")
        .decimal(stats_interval_millis())
        .text(b" TALLYMALLOC_HUGE_PAGES=")
        .text(if huge_pages() { b"1" } else { b"0" })
        .text(b" TALLYMALLOC_VERBOSE=1\n");
    line.write_to_stderr();
}

/// One line: `tallymalloc: ignoring NAME=VALUE: expected EXPECTED`.
fn warn_bad_option(name: &[u8], value: &[u8], expected: &[u8]) {
    let mut line = Line::new();
    line.text(b"tallymalloc: ignoring ")
        .text(name)
        .text(b"=")
        .text(value)
        .text(b": expected ")
        .text(expected)
        .text(b"\n");
    line.write_to_stderr();
}

fn parse_bytes(text: &[u8]) -> Option<usize> {
    parse_decimal(text, 1 << 40).map(|value| value as usize)
}

fn parse_millis(text: &[u8]) -> Option<u64> {
    parse_decimal(text, MAX_PURGE_DELAY_MILLIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_are_exactly_the_options_the_parser_knows() {
        for name in OPTION_NAMES {
            let short = name.strip_prefix("TALLYMALLOC_").expect("the prefix");
            // A name with no value is a bad value for every option: warned about, not applied.
            assert!(
                apply_option(short.as_bytes(), name.as_bytes(), b""),
                "{name} is listed but the parser does not know it"
            );
        }
        for unknown in ["PURGE", "DEBUG_", "STATS_FILE", "lib", ""] {
            assert!(!apply_option(unknown.as_bytes(), b"TALLYMALLOC_X", b"1"));
        }
        let mut sorted = OPTION_NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), OPTION_NAMES.len(), "a name listed twice");
    }

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
        apply_entry(b"TALLYMALLOC_DEBUG_DEPTH=0");
        assert_eq!(debug_depth(), DEFAULT_DEBUG_DEPTH);
        apply_entry(b"TALLYMALLOC_DEBUG_DEPTH=65");
        assert_eq!(debug_depth(), DEFAULT_DEBUG_DEPTH);
        apply_entry(b"TALLYMALLOC_DEBUG_DEPTH=64");
        assert_eq!(debug_depth(), 64);
        apply_entry(b"TALLYMALLOC_DEBUG_DEPTH=24");
        assert_eq!(debug_depth(), DEFAULT_DEBUG_DEPTH);
        apply_entry(b"TALLYMALLOC_HUGE_PAGES=0");
        assert!(!huge_pages());
        apply_entry(b"TALLYMALLOC_HUGE_PAGES=yes");
        assert!(!huge_pages());
        apply_entry(b"TALLYMALLOC_HUGE_PAGES=1");
        assert!(huge_pages());
    }

    #[test]
    fn stats_options_parse() {
        assert!(!set_stats_option(b"yes"));
        assert!(!set_stats_option(b"json:"));
        assert_eq!(stats_at_exit(), StatsAtExit::Off);
        assert!(set_stats_option(b"json:/tmp/stats-%p.json"));
        assert_eq!(stats_at_exit(), StatsAtExit::Json);
        assert_eq!(stats_path(), b"/tmp/stats-%p.json");
        assert!(set_stats_option(b"0"));
        assert_eq!(stats_at_exit(), StatsAtExit::Off);
        apply_entry(b"TALLYMALLOC_ON_MISMATCH=sometimes");
        assert_eq!(domain::on_mismatch(), OnMismatch::Warn);
    }
}
