//! Sampled heap profiles: which call stacks allocated how much, and what they held at the
//! peak, estimated from a sample of the allocations at a cost the fast paths barely notice.
//!
//! On with `TALLYMALLOC_PROFILE=1` (or [`enable`]), off by default. Each allocation is sampled
//! with a chance that grows with its size (`sampler.rs`); a sampled one has its stack captured
//! and numbered (`platform/unwind/`), its weight added to its site's estimates (`totals.rs`),
//! and its address kept with what it stands for (`samples.rs`), so its free takes that back.
//!
//! The fast paths pay one branch: the count of allocations of each size class doubles as the
//! countdown to the class's next sample (stats.rs, A4), which with profiling off is never due.
//! The page a sampled block came from is flagged `FLAG_SAMPLED`, so every free of that page
//! takes the slow path, which finds out whether the block is a sample; the flag goes when the
//! page's last sample is freed. A huge block's free is a slow path anyway.
//!
//! Invariants:
//! - **PF1**: a sampled small, medium or large block is in the sample table only while its
//!   page has `FLAG_SAMPLED` and counts it in `sampled`; so every free of it looks it up.
//! - **PF2**: nothing here allocates through the allocator: stacks, samples and totals live in
//!   metadata mappings (`os::reserve_metadata`), and the file is written through a stack
//!   buffer.
//! - **PF3**: profiling is off while debug mode is on: debug mode's blocks are its own layout,
//!   and it captures every stack anyway.
//! - **PF4** (`Page::sample_hint`): a nonzero hint is a live sample of its page. The owner
//!   raises `sampled` before it stores a new hint; a free of the hinted sample clears the hint
//!   before it lowers `sampled`. So a thread that reads the hint, then `sampled`, and finds one
//!   sample and a hint that is not its block, frees a block that is no sample.

pub(crate) mod output;
pub mod python;
pub mod sampler;
mod samples;
mod totals;

pub use output::write_at_exit;
pub use sampler::Random;
pub use totals::SiteEstimate;

use crate::platform::unwind::{self, Stack};
use crate::policy::options;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set once profiling has started: from then on, huge blocks' frees ask the sample table.
static EVER_ENABLED: AtomicBool = AtomicBool::new(false);
/// Bumped whenever profiling starts or stops, so each heap re-draws its countdowns.
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// A countdown that is never due (stats.rs clamps to this).
pub const NEVER: u64 = 1 << 62;

/// Whether allocations are being sampled.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Starts profiling if `TALLYMALLOC_PROFILE=1` asked for it (process set-up, after the
/// options), with the profile written at exit: to `TALLYMALLOC_PROFILE_FILE`, or its top sites
/// on stderr. (A program that starts profiling itself reads the profile itself.)
/// Runs under the process set-up's lock, so it asks the options, not `debug::active` (which
/// would take that lock again to decide).
pub(crate) fn start_from_environment() {
    if options::profile_requested() && !options::debug_requested() {
        start();
        crate::stats::exit_report::also_at_exit(write_at_exit);
    }
}

/// Starts sampling allocations; false if debug mode is on, which excludes profiling (PF3).
/// Threads start sampling at their next slow path.
pub fn enable() -> bool {
    if options::debug_requested() || crate::debug::active() {
        return false;
    }
    start();
    true
}

fn start() {
    EVER_ENABLED.store(true, Ordering::Release);
    if !ACTIVE.swap(true, Ordering::AcqRel) {
        EPOCH.fetch_add(1, Ordering::Release);
    }
}

/// Stops sampling. The estimates so far stay, and frees of sampled blocks still count.
pub fn disable() {
    if ACTIVE.swap(false, Ordering::AcqRel) {
        EPOCH.fetch_add(1, Ordering::Release);
    }
}

/// Whether profiling was ever on: huge blocks may be samples.
#[inline]
pub fn ever_enabled() -> bool {
    EVER_ENABLED.load(Ordering::Acquire)
}

/// Changes whenever profiling starts or stops.
#[inline]
pub fn epoch() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// Allocations of `block_size`-byte blocks until the next one to sample: [`NEVER`] while
/// profiling is off.
pub fn next_gap(random: &mut Random, block_size: usize) -> u64 {
    if active() {
        sampler::gap(random, block_size, options::profile_sample_bytes())
    } else {
        NEVER
    }
}

/// Whether to sample one huge block of `size` bytes (drawn only while profiling).
pub fn sample_huge(random: &mut Random, size: usize) -> bool {
    active() && sampler::coin(random, size, options::profile_sample_bytes())
}

/// Records the sampled allocation of the block at `address`, asked for as `requested` bytes
/// and sampled with the chance of a `sampled_size`-byte block. True if the sample was kept:
/// the caller then flags the block's page (PF1).
#[inline(never)]
pub fn record(address: usize, requested: usize, sampled_size: usize) -> bool {
    let chance = sampler::probability(sampled_size, options::profile_sample_bytes());
    if chance <= 0.0 {
        return false;
    }
    let mut stack = Stack::new();
    unwind::capture_into(&mut stack, 0, unwind::MAX_DEPTH);
    let site = intern_with_python_frames(&program_frames(&stack));
    let sample = samples::Sample {
        address,
        site,
        bytes: requested as f64 / chance,
        count: 1.0 / chance,
    };
    if !samples::insert(sample) {
        return false;
    }
    totals::allocated(site, sample.count, sample.bytes);
    true
}

/// The site of `native` followed by the thread's Python frames, if it is in Python (PY1).
fn intern_with_python_frames(native: &Stack) -> u32 {
    // Zeroing the frames' buffer was an eighth of a sample's instructions in a C program.
    if !python::has_source() {
        return unwind::sites::intern(native.frames());
    }
    let mut python_frames = [0usize; 2 * python::MAX_FRAMES];
    let count = python::capture(&mut python_frames);
    if count == 0 {
        return unwind::sites::intern(native.frames());
    }
    let mut frames = [0usize; unwind::MAX_DEPTH + 1 + 2 * python::MAX_FRAMES];
    let depth = native.depth();
    frames[..depth].copy_from_slice(native.frames());
    frames[depth] = python::MARK;
    frames[depth + 1..depth + 1 + 2 * count].copy_from_slice(&python_frames[..2 * count]);
    unwind::sites::intern(&frames[..depth + 1 + 2 * count])
}

/// Takes the block at `address` out of the samples if it is one; true if it was.
pub fn released(address: usize) -> bool {
    match samples::remove(address) {
        Some(sample) => {
            totals::freed(sample.site, sample.count, sample.bytes);
            true
        }
        None => false,
    }
}

/// A huge block sampled at `from` now lies at `to` (`mremap` moved it).
pub fn moved(from: usize, to: usize) {
    if let Some(mut sample) = samples::remove(from) {
        sample.address = to;
        if !samples::insert(sample) {
            totals::freed(sample.site, sample.count, sample.bytes);
        }
    }
}

/// `stack` without its innermost frames in the allocator itself, when the allocator is a
/// library of its own (the C library, the Python extension); in a Rust program linked with it,
/// the allocator's frames are the program's and stay.
fn program_frames(stack: &Stack) -> Stack {
    static OWN_CODE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    static OWN_END: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let mut start = OWN_CODE.load(Ordering::Relaxed);
    let mut end = OWN_END.load(Ordering::Relaxed);
    if start == 0 {
        match unwind::code_at(record as *const () as usize) {
            Some(code) if !code.is_main_program => (start, end) = (code.start, code.end),
            _ => (start, end) = (1, 1),
        }
        OWN_END.store(end, Ordering::Relaxed);
        OWN_CODE.store(start, Ordering::Relaxed);
    }
    let frames = stack.frames();
    let first_outside = frames
        .iter()
        .position(|&frame| !(start..end).contains(&frame))
        .unwrap_or(frames.len());
    Stack::from_frames(&frames[first_outside..])
}

/// The profile so far: the samples taken, the estimated live bytes now and at the peak, and
/// each site's estimates, written into `sites` (as many as fit; the count of all is returned).
pub fn snapshot(sites: &mut [SiteEstimate]) -> (ProfileSummary, usize) {
    let (samples, live_bytes, peak_bytes) = totals::summary();
    let mut count = 0;
    totals::for_each_site(|estimate| {
        if let Some(slot) = sites.get_mut(count) {
            *slot = *estimate;
        }
        count += 1;
    });
    let summary = ProfileSummary {
        active: active(),
        sample_bytes: options::profile_sample_bytes(),
        samples,
        dropped: samples::dropped(),
        live_bytes,
        peak_bytes,
    };
    (summary, count)
}

/// The profile's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProfileSummary {
    pub active: bool,
    /// The mean bytes allocated between two samples.
    pub sample_bytes: usize,
    /// Samples taken, and those not kept because the table was full.
    pub samples: u64,
    pub dropped: u64,
    /// The estimated live bytes of all sites, now and at their peak.
    pub live_bytes: f64,
    pub peak_bytes: f64,
}

/// Sites that have had a sample.
pub fn site_count() -> usize {
    totals::site_count()
}

/// The frames of `site`, innermost first: its native frames, then, if it was in Python,
/// [`python::MARK`] and its Python frames (pairs of code object and line).
pub fn site_frames(site: u32) -> Option<&'static [usize]> {
    unwind::sites::frames(site)
}
