//! tallymalloc: a fast general-purpose memory allocator.
//!
//! Small and large requests (up to [`LARGE_MAX`] bytes) are served from size-classed pages in
//! 4 MiB segments held by thread-local heaps, so the common path takes no lock and makes no
//! system call; blocks freed by other threads go back through a lock-free list. Larger requests
//! get a mapping of their own. Every block belongs to a [`Domain`] (allocator family), freeing
//! through the wrong one is caught, and [`stats()`] reads live accounting by domain and size
//! class. See `docs/ARCHITECTURE.md` for the architecture; each module states the invariants
//! its `unsafe` code relies on.
//!
//! Use it as Rust's global allocator:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;
//!
//! let words: Vec<String> = (0..1000).map(|n| n.to_string()).collect();
//! assert_eq!(words[999], "999");
//! ```
//!
//! or call it directly, as the C library does:
//!
//! ```
//! let block = tallymalloc::malloc(100).expect("out of memory");
//! assert!(unsafe { tallymalloc::usable_size(block.as_ptr()) } >= 100);
//! unsafe { tallymalloc::free(block.as_ptr()) };
//! ```
//!
//! # Contract
//! Allocation functions return `None` when the OS refuses memory, or for requests no allocator
//! could satisfy (sizes near `usize::MAX`, bad alignments); they never panic or abort. Every
//! failure also sets the thread's `errno` to `ENOMEM`, as C callers expect, so the C library
//! can return the result as it is. Every block is aligned to 16 bytes, or to 8 if it is 8 bytes
//! or smaller.

mod alloc;
mod debug;
mod platform;
mod policy;
mod profile;
mod purge;
mod stats;

pub use alloc::aligned::{aligned_alloc, aligned_zalloc};
pub use alloc::allocate::{calloc, malloc, size_overflow, zalloc};
pub use alloc::buffer::{Buffer, OutOfMemory, RawBuffer};
pub use alloc::free::{free, free_checked, free_in_own_domain, free_or_report};
pub use alloc::global::TallyMalloc;
pub use alloc::huge::MAX_ALIGN;
pub use alloc::lookup::{domain_of, is_block_start, is_ours, usable_size};
pub use alloc::realloc::{realloc, realloc_aligned};
pub use alloc::size_class::{LARGE_MAX, MIN_ALIGN};
pub use debug::ErrorKind as DebugErrorKind;
pub use platform::fault::{injected_failures, set_plan as set_fault_plan, FaultPlan};
pub use platform::os::{set_errno, ErrnoGuard};
pub use policy::domain::{
    is_valid_name as is_valid_domain_name, mismatches_between, on_mismatch, set_on_mismatch,
    Domain, DomainError, OnMismatch, MAX_DOMAINS, MAX_NAME_LEN as MAX_DOMAIN_NAME_LEN,
};
pub use policy::misuse::{
    invalid_pointer_count, report_invalid_pointer, report_not_a_block_start, report_unknown_domain,
};
pub use policy::options::{
    huge_pages, on_error, purge_delay_millis, set_huge_pages, set_on_error, set_purge_delay_millis,
    OnError, StatsAtExit, OPTION_NAMES,
};
pub use profile::{ProfileSummary, SiteEstimate as ProfileEstimate};
pub use purge::pace::purge_delay_in_force_millis;
pub use stats::report::Sink as StatsSink;
pub use stats::{
    CommandLine, DomainStats, Domains, Figures as StatsFigures, HugeStats, ProcessStats,
    SizeClassStats, Stats, PUBLISH_STEP, SCHEMA_VERSION as STATS_SCHEMA_VERSION,
};

pub(crate) use platform::text::fatal;

/// Reads the options from the environment and sets up process-wide state, if not done yet.
/// Allocating does this by itself; a library constructor calls it to apply options (and print
/// them with `TALLYMALLOC_VERBOSE=1`) before the first allocation.
///
/// It also starts the stats sampler when `TALLYMALLOC_STATS_INTERVAL` asks for one (the C
/// library's constructor calls it; a Rust program that wants a timeline calls it from `main`).
pub fn init() {
    alloc::thread::ensure_process_ready();
    stats::timeline::start(policy::options::stats_interval_millis());
}

/// A snapshot of the live accounting: every domain, every size class, the process. Reading
/// never blocks an allocating thread; see [`Stats`] for how fresh the figures are.
pub fn stats() -> Stats {
    stats::snapshot()
}

/// Starts the watermark of a domain (a [`Domain`]) or of all of them together
/// ([`Domains::All`]) again from what it holds now: from then on [`watermark`] gives the most it
/// held since, while the `peak_bytes` stay the process's. For measuring a part of a run (a
/// test) without resetting the process-wide figures; bytes allocated during the part are the
/// difference of two snapshots' `allocated_bytes` ([`Stats::all_domains`] for all).
pub fn reset_watermark(domains: impl Into<Domains>) {
    stats::reset_watermark(domains.into());
}

/// The most the domain, or all domains together, held (usable bytes) since [`reset_watermark`]
/// (or since the process started), as precise as a peak (`docs/stats-schema.json`'s
/// `peak_bytes`).
pub fn watermark(domains: impl Into<Domains>) -> u64 {
    stats::watermark(domains.into())
}

/// Writes [`stats()`] as JSON (`docs/stats-schema.json`) into `buffer`, NUL-terminated, and
/// returns its length (without the NUL). An empty buffer asks for the size: the answer is an
/// upper bound that still holds after the figures change (a buffer of that many bytes plus one
/// always receives a complete document). A buffer too small for the whole document gets it
/// without its oldest timeline samples, or, if even that does not fit, cut as `snprintf` cuts
/// (a result of `buffer.len()` or more). Includes the timeline if `TALLYMALLOC_STATS_INTERVAL`
/// started a sampler. Does not allocate.
pub fn stats_json(buffer: &mut [u8]) -> usize {
    stats::report::json_into(buffer)
}

/// Writes the human stats table into `buffer`, NUL-terminated, as `snprintf` does, and returns
/// its whole length; an empty buffer asks for an upper bound on the size, as with
/// [`stats_json`].
pub fn stats_text(buffer: &mut [u8]) -> usize {
    stats::report::table_into(buffer)
}

/// Writes the human stats table to the file descriptor `fd`. Does not allocate.
pub fn stats_print_to_fd(fd: i32) {
    let snapshot = stats::snapshot();
    stats::report::write_table(&snapshot, &mut stats::report::FdSink::new(fd));
}

/// Writes the human stats table into `sink` (the C library's `tm_stats_print` writes to a
/// `FILE`). Does not allocate.
pub fn write_stats_table(sink: &mut impl StatsSink) {
    stats::report::write_table(&stats::snapshot(), sink);
}

/// The human stats table as a `String`.
pub fn stats_table() -> String {
    let snapshot = stats::snapshot();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let mut sink = stats::report::BufferSink::new(&mut buffer);
        stats::report::write_table(&snapshot, &mut sink);
        let length = sink.finish();
        if length < buffer.len() {
            buffer.truncate(length);
            return String::from_utf8_lossy(&buffer).into_owned();
        }
        buffer.resize(length + 1, 0);
    }
}

/// Writes the reports that `TALLYMALLOC_STATS` and `TALLYMALLOC_PROFILE` ask for at exit, for
/// a process about to leave without running its exit handlers (the C library's `_exit`). Does
/// nothing if they were written already, or in a `vfork` child. Does not allocate.
pub fn report_at_quick_exit() {
    stats::exit_report::report_at_quick_exit();
}

/// Records one timeline sample now (the sampler does this every `TALLYMALLOC_STATS_INTERVAL`
/// milliseconds; tests and tools may add their own). Does nothing unless a sampler started.
pub fn take_timeline_sample() {
    stats::timeline::take_sample();
}

/// Turns debug mode on (as `TALLYMALLOC_DEBUG=1` does): true if it is on now; false if the
/// process already allocated without it, since every block must have the debug layout.
pub fn debug_enable() -> bool {
    debug::enable()
}

/// Whether debug mode is on.
pub fn debug_active() -> bool {
    debug::active()
}

/// In debug mode, checks every live block's guard bytes and every quarantined block's poison,
/// reporting each problem; returns how many blocks had one (0 outside debug mode).
pub fn debug_check() -> usize {
    debug::check_all()
}

/// In debug mode, lists on stderr the blocks live now, by domain and by allocation site with
/// their stacks; returns their count and bytes ((0, 0) outside debug mode).
pub fn debug_leak_report() -> (u64, u64) {
    debug::report_leaks(b"now")
}

/// Fills `frames` with the calling thread's return addresses, innermost first, as debug mode
/// captures them, less the `skip` innermost (with 0, the first lies in the function that
/// called this one); returns how many. Allocates nothing.
#[inline(never)]
pub fn backtrace(frames: &mut [usize], skip: usize) -> usize {
    // The walk's first frame is this function's own.
    let stack = platform::unwind::capture(1 + skip, frames.len());
    let found = stack.frames();
    frames[..found.len()].copy_from_slice(found);
    found.len()
}

/// Starts sampled heap profiling (as `TALLYMALLOC_PROFILE=1` does at start-up): each thread
/// samples from its next slow path on, one allocation per
/// [`profile_set_sample_bytes`] bytes on average. False if debug mode is on, which excludes it.
pub fn profile_enable() -> bool {
    profile::enable()
}

/// Stops sampling; the profile so far stays, and frees of sampled blocks still count.
pub fn profile_disable() {
    profile::disable()
}

/// Whether allocations are being sampled.
pub fn profile_active() -> bool {
    profile::active()
}

/// Sets the mean bytes allocated between two samples (1 to 2^40; `TALLYMALLOC_PROFILE_SAMPLE_BYTES`
/// at start-up, 512 KiB by default); false for a value out of range. Threads draw their next
/// countdowns with it.
pub fn profile_set_sample_bytes(bytes: usize) -> bool {
    policy::options::set_profile_sample_bytes(bytes)
}

/// Writes the profile as it stands to the file descriptor `fd`, in the file format
/// `tallymalloc run` reads (raw return addresses and the process's mappings; see
/// `docs/ARCHITECTURE.md`). Allocates nothing.
pub fn profile_write_to_fd(fd: i32) {
    profile::output::write_to_fd(fd)
}

/// The function a Python extension registers to put Python frames in the profile
/// ([`profile_set_python_frames`]).
pub use profile::python::FrameSource as PythonFrameSource;

/// Registers the function that writes the calling thread's Python frames on each sampled
/// allocation, or none: `source(out, capacity)` writes up to `capacity` frames as pairs of
/// words (the code object's address, with bit 0 set on a frame an evaluation loop entered
/// first; the line), innermost first, and returns how many. It runs inside the allocator: it
/// must return 0 unless the thread holds the GIL, must not allocate, take the GIL or call back
/// into the allocator, and must keep each code object it reports alive.
pub fn profile_set_python_frames(source: Option<PythonFrameSource>) {
    profile::python::set_source(source);
}

/// Records a Python code object's function and file names for the profile written at exit
/// (the first names given for a code object stay). False if the table is full.
pub fn profile_name_python_code(code: usize, function: &[u8], file: &[u8]) -> bool {
    profile::python::name_code(code, function, file)
}

/// One allocation site of the profile: its stack and what the samples estimate for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSite {
    /// Return addresses, innermost first (symbolise them with the `tallymalloc` command,
    /// `addr2line` or the `backtrace` crate).
    pub frames: Vec<usize>,
    pub estimate: ProfileEstimate,
}

/// The sampled heap profile so far: totals and every site that has had a sample, by estimated
/// bytes allocated, largest first. Empty unless profiling was on.
pub fn profile() -> (ProfileSummary, Vec<ProfileSite>) {
    // Sized first and filled into memory allocated outside the profile's lock: this Vec may
    // come from tallymalloc itself, which may sample it.
    let mut estimates = Vec::new();
    let summary = loop {
        let room = profile::site_count() + 16;
        estimates.resize(room, ProfileEstimate::default());
        let (summary, count) = profile::snapshot(&mut estimates);
        if count <= room {
            estimates.truncate(count);
            break summary;
        }
    };
    let mut sites: Vec<ProfileSite> = estimates
        .into_iter()
        .map(|estimate| ProfileSite {
            frames: profile::site_frames(estimate.site)
                .map(|frames| {
                    frames
                        .split(|&frame| frame == profile::python::MARK)
                        .next()
                        .unwrap_or(&[])
                        .to_vec()
                })
                .unwrap_or_default(),
            estimate,
        })
        .collect();
    sites.sort_by(|a, b| {
        b.estimate
            .allocated_bytes
            .total_cmp(&a.estimate.allocated_bytes)
    });
    (summary, sites)
}

/// Misuse debug mode has found so far.
pub fn debug_error_count() -> u64 {
    debug::error_count()
}

/// Returns what the calling thread's heap can give back now: empty pages and their memory, the
/// spare segment, and segments abandoned by exited threads that turn out to be empty.
pub fn collect() {
    alloc::heap::collect_current();
}

/// The system's page size, read once.
pub fn page_size() -> usize {
    platform::os::page_size()
}

/// Bytes of address space tallymalloc holds from the OS.
pub fn reserved_bytes() -> usize {
    platform::os::reserved_bytes()
}

/// Resident memory of the whole process, from `/proc/self/statm`.
pub fn process_resident_bytes() -> Option<usize> {
    platform::os::resident_bytes()
}

/// Segments left by exited threads that no thread has adopted yet.
pub fn abandoned_segments() -> usize {
    alloc::segment::abandoned_count()
}

/// The crate's README, whose example runs as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
