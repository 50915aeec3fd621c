//! Debug mode: every block carries a header and guard bytes, freed blocks are poisoned and held
//! in a quarantine, and misuse is reported by kind (and, unless `TALLYMALLOC_ON_ERROR=report`,
//! stops the process). Switched on by `TALLYMALLOC_DEBUG=1` or [`enable`] before the first
//! allocation, so that every block of the process has the debug layout.
//!
//! A debug block is a core block laid out as `[lead][user bytes][guard]`: the last 64 bytes of
//! the lead are the [`Header`] (16 of them the front guard), `lead` is 64 or the alignment
//! asked for if larger, and the guard is 16 bytes. Fresh user bytes are `0xCD`, freed ones
//! `0xDD`, guards `0xFD` (CPython's debug hooks use the same three).
//!
//! Release mode pays nothing on the fast paths: in debug mode no page is ever a size class's
//! current page and every page is flagged `FLAG_SLOW_ONLY`, so every allocation and every free
//! takes a slow path, and the slow paths (`malloc_generic`, `free_slow`, huge blocks) ask
//! [`active`]. Aligned allocations of more than 16 bytes, realloc and malloc_usable_size ask
//! it at their start: one load and one branch.
//!
//! Invariants:
//! - **D1**: while the mode is on, every block handed out is a debug block; the mode is decided
//!   once, before the first block, and never changes after.
//! - **D2**: a header's `state` is `LIVE` exactly while its block is handed out, and moves to
//!   `FREED` by one compare-exchange, so of two racing frees one wins and the other reports.
//! - **D3** (`lists.rs`): a live block is on a live list; a freed one is in a quarantine until
//!   it goes back to the core.
//! - **D4**: nothing here allocates through the allocator.
//!
//! This module holds the mode, the block layout, and allocation, free, realloc and the checks;
//! `lists.rs` the live blocks and the quarantine, `report.rs` the misuse reports, `leaks.rs`
//! the leak reports, `backtrace.rs` the stacks they print (numbered by
//! `platform/unwind/sites.rs`).

pub(crate) mod backtrace;
mod leaks;
mod lists;
mod report;

use crate::alloc::segment::{segment_of, SegmentKind};
use crate::platform::list::Links;
use crate::platform::text::{fatal, Line};
use crate::policy::domain::Domain;
use crate::policy::options::{on_error_in_debug, OnError};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use leaks::report_at_exit;
pub use leaks::report_leaks;
pub use report::{error_count, report_absurd_size, report_invalid, ErrorKind};
use report::{report, Described};

const OFF: u8 = 0;
const ON: u8 = 1;
const UNDECIDED: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
/// False once the mode is decided off: the one flag release mode reads, as a bool so that
/// the test is a compare with memory and a branch.
static MAY_BE_ON: AtomicBool = AtomicBool::new(true);

/// Whether debug mode is on. The first call decides it (D1).
#[inline(always)]
pub fn active() -> bool {
    MAY_BE_ON.load(Ordering::Relaxed) && (MODE.load(Ordering::Relaxed) == ON || decide())
}

#[cold]
#[inline(never)]
fn decide() -> bool {
    if MODE.load(Ordering::Acquire) == UNDECIDED {
        // Reads TALLYMALLOC_DEBUG.
        crate::alloc::thread::ensure_process_ready();
        let requested = if crate::policy::options::debug_requested() {
            ON
        } else {
            OFF
        };
        if MODE
            .compare_exchange(UNDECIDED, requested, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && requested == ON
        {
            turned_on();
        }
    }
    let on = MODE.load(Ordering::Acquire) == ON;
    if !on {
        MAY_BE_ON.store(false, Ordering::Relaxed);
    }
    on
}

/// Turns debug mode on; true if it is on now, false if the first allocation already decided
/// it off (D1).
pub fn enable() -> bool {
    match MODE.compare_exchange(UNDECIDED, ON, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            turned_on();
            true
        }
        Err(mode) => mode == ON,
    }
}

/// Once, as the mode is decided on: the checks and the leak report at exit come before the
/// stats report (which knows nothing of debug mode).
fn turned_on() {
    crate::stats::exit_report::first_at_exit(report_at_exit);
    crate::policy::misuse::report_invalid_pointers_with(report_invalid);
}

thread_local! {
    /// Set while this thread allocates a core block for the debug layer, so that the slow
    /// paths, which hand allocations to debug mode, let that one through.
    static IN_LAYER: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether this thread is allocating for the debug layer itself.
pub fn in_layer() -> bool {
    IN_LAYER.with(core::cell::Cell::get)
}

/// The site of blocks allocated for tallymalloc's own use: left out of the leak reports.
const ALLOCATOR_SITE: u32 = u32::MAX;

const HEADER: usize = 64;
const GUARD: usize = 16;
const FRESH_BYTE: u8 = 0xCD;
const DEAD_BYTE: u8 = 0xDD;
const GUARD_BYTE: u8 = 0xFD;
const LIVE: u32 = 0x11FE_B10C;
const FREED: u32 = 0xDEAD_B10C;
/// Freed, and back in the core (its `freed_at` may be overwritten).
const RELEASED: u32 = 0xDEAD_0000;

#[repr(C)]
struct Header {
    /// While the block is quarantined, where it was freed (a site); once it is back in the
    /// core, the core's free-list link may land here.
    freed_at: usize,
    /// Links in a live list or a quarantine (D3).
    links: Links<Header>,
    size: usize,
    /// Bytes from the core block's start to the user block.
    lead: u32,
    domain: u8,
    /// The shard of the live list the block is on (`lists.rs`).
    shard: u8,
    _pad: [u8; 2],
    state: AtomicU32,
    /// Where the block was allocated (`sites.rs`; 0: unknown).
    site: u32,
    front_guard: [u8; GUARD],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER);

/// Whether every byte of `bytes` is `byte`. Poison checks read every freed byte and nearly
/// always find it intact, so 64 bytes at a time are folded together (the compiler makes that
/// a compare and a branch a word: half the instructions of a test per word, glibc_simple.c in
/// debug mode under callgrind).
fn filled_with(bytes: &[u8], byte: u8) -> bool {
    let pattern = u64::from_ne_bytes([byte; 8]);
    let differs = |word: &[u8]| u64::from_ne_bytes(word.try_into().unwrap_or_default()) ^ pattern;
    let mut chunks = bytes.chunks_exact(64);
    let chunks_intact = chunks.all(|chunk| {
        chunk
            .chunks_exact(8)
            .fold(0, |folded, word| folded | differs(word))
            == 0
    });
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(8);
    chunks_intact
        && words.all(|word| differs(word) == 0)
        && words.remainder().iter().all(|&b| b == byte)
}

/// Writes `byte` over `size` bytes at `at`: the small fills of every debug block (its guard,
/// and most blocks' bytes) word by word, since a call to `memset` cost more than they do.
///
/// # Safety
/// `[at, at + size)` is writable.
#[inline(always)]
unsafe fn fill(at: *mut u8, byte: u8, size: usize) {
    if size > 64 {
        // SAFETY: the caller's contract.
        return unsafe { ptr::write_bytes(at, byte, size) };
    }
    let pattern = u64::from_ne_bytes([byte; 8]);
    let words = size / 8;
    // SAFETY: the caller's contract; the writes stay within `size` bytes.
    unsafe {
        for word in 0..words {
            at.add(word * 8).cast::<u64>().write_unaligned(pattern);
        }
        for rest in words * 8..size {
            at.add(rest).write(byte);
        }
    }
}

fn header_of(user: *mut u8) -> *mut Header {
    user.wrapping_sub(HEADER).cast()
}

fn user_of(header: *mut Header) -> *mut u8 {
    header.cast::<u8>().wrapping_add(HEADER)
}

/// Allocates a debug block of `size` bytes aligned to `align` in `domain`; null on failure.
pub fn allocate(domain: Domain, size: usize, align: usize, zero: bool) -> *mut u8 {
    let align = align.max(crate::alloc::size_class::MIN_ALIGN);
    let lead = HEADER.max(align);
    let Some(total) = size
        .checked_add(lead + GUARD)
        .filter(|&t| t <= crate::alloc::size_class::MAX_REQUEST)
    else {
        report_absurd_size(b"malloc", size);
        return crate::platform::os::out_of_memory();
    };
    let site = if crate::platform::os::allocating_for_allocator() {
        ALLOCATOR_SITE
    } else {
        crate::debug::backtrace::site_here(1)
    };
    // From a segment's alignment on, the header goes just before the boundary the user's
    // bytes start on (U6 in huge.rs): the core block then lies in its segment's first slot.
    let (lead, total) = if align >= crate::alloc::segment::SEGMENT_SIZE {
        (HEADER, total - lead + HEADER)
    } else {
        (lead, total)
    };
    IN_LAYER.with(|flag| flag.set(true));
    let raw = if lead < align {
        crate::alloc::domain_heap::allocate_core_led(domain, total, align, lead)
    } else {
        crate::alloc::domain_heap::allocate_core(domain, total, align)
    };
    IN_LAYER.with(|flag| flag.set(false));
    if raw.is_null() {
        return raw;
    }
    // SAFETY: `raw` is a fresh core block of `total` bytes; the header and guards lie in it.
    unsafe {
        let user = raw.add(lead);
        let header = header_of(user);
        ptr::write(
            header,
            Header {
                freed_at: 0,
                links: Links::UNLINKED,
                size,
                lead: lead as u32,
                domain: domain.stored(),
                shard: 0,
                _pad: [0; 2],
                state: AtomicU32::new(LIVE),
                site,
                front_guard: [GUARD_BYTE; GUARD],
            },
        );
        fill(user, if zero { 0 } else { FRESH_BYTE }, size);
        fill(user.add(size), GUARD_BYTE, GUARD);
        lists::add_live(header);
        user
    }
}

/// Validates `user` as a live debug block for `call` through `domain`'s family, reporting what
/// is wrong; returns its header if the block can be released or resized.
///
/// # Safety
/// `user` is any pointer (checked here).
unsafe fn claim(call: &[u8], domain: Domain, user: *mut u8, release: bool) -> Option<*mut Header> {
    let address = user as usize;
    // A block on a segment boundary has its header, and its core block, in the slot before.
    let holder = if address & crate::alloc::segment::SEGMENT_MASK == 0 {
        address.wrapping_sub(HEADER)
    } else {
        address
    };
    if !crate::alloc::registry::contains(holder) {
        report(ErrorKind::InvalidPointer, call, address, None);
        return None;
    }
    if !address.is_multiple_of(crate::alloc::size_class::MIN_ALIGN) {
        report_not_a_block(call, user);
        return None;
    }
    let header = header_of(user);
    // Blocks start past their segment's header, so the 64 bytes before `user` lie in the
    // same segment; D2 governs the state.
    // SAFETY: the registry says the segment is ours, so those bytes are mapped.
    unsafe {
        let next_state = if release { FREED } else { LIVE };
        match (*header).state.compare_exchange(
            LIVE,
            next_state,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {}
            Err(FREED | RELEASED) => {
                let described = Described::of(header);
                let kind = if release {
                    ErrorKind::DoubleFree
                } else {
                    ErrorKind::ReallocOfFreed
                };
                report(kind, call, address, Some(described));
                return None;
            }
            Err(_) => {
                report_not_a_block(call, user);
                return None;
            }
        }
        let described = || Described::of(header);
        if Domain::from_stored((*header).domain) != domain {
            report(ErrorKind::DomainMismatch, call, address, Some(described()));
        }
        if !filled_with(&(*header).front_guard, GUARD_BYTE) {
            report(
                ErrorKind::WriteBeforeStart,
                call,
                address,
                Some(described()),
            );
        }
        let back = core::slice::from_raw_parts(user.add((*header).size), GUARD);
        if !filled_with(back, GUARD_BYTE) {
            report(ErrorKind::WritePastEnd, call, address, Some(described()));
        }
        Some(header)
    }
}

/// The size of a debug block's header, which precedes the user's bytes.
pub const HEADER_SIZE: usize = HEADER;

/// The domain of the live debug block `user`.
///
/// # Safety
/// `user` must be a live debug block (D1).
pub unsafe fn domain_of(user: *mut u8) -> Domain {
    // SAFETY: the caller's contract: the header precedes the block, and its domain byte was
    // stored from a Domain.
    unsafe { Domain::from_stored((*header_of(user)).domain) }
}

/// `user` is ours but no live block starts there: inside one, or nowhere.
fn report_not_a_block(call: &[u8], user: *mut u8) {
    if user as usize & crate::alloc::segment::SEGMENT_MASK == 0 {
        // A boundary whose header slot is ours but holds no live block before it.
        return report(ErrorKind::InvalidPointer, call, user as usize, None);
    }
    // SAFETY: the registry said the segment is ours, so its header and pages are mapped.
    let start = unsafe {
        let segment = segment_of(user);
        if (*segment).kind == SegmentKind::Huge {
            (*segment).pages[0].area
        } else {
            let page = (*segment).page_of(user);
            if (*page).block_size == 0 || !(*page).in_use {
                ptr::null_mut()
            } else {
                (*page).block_start(user)
            }
        }
    };
    if !start.is_null() {
        // Blocks without a larger alignment keep their header at the core block's start.
        let header = start.cast::<Header>();
        // SAFETY: `start` is a block of an in-use page of ours, so mapped.
        let inside = unsafe {
            (*header).state.load(Ordering::Acquire) == LIVE
                && (user as usize) > user_of(header) as usize
                && (user as usize) < user_of(header) as usize + (*header).size
        };
        if inside {
            // SAFETY: as above.
            let described = unsafe { Described::of(header) };
            report(
                ErrorKind::InteriorPointer,
                call,
                user as usize,
                Some(described),
            );
            return;
        }
    }
    report(ErrorKind::InvalidPointer, call, user as usize, None);
}

/// Frees `user` (any pointer; null is ignored) through `domain`'s family.
///
/// # Safety
/// None beyond what the checks catch: this is the checking free.
pub unsafe fn free(domain: Domain, user: *mut u8) {
    if user.is_null() {
        return;
    }
    // SAFETY: `claim` checks the pointer.
    if let Some(header) = unsafe { claim(b"free", domain, user, true) } {
        // SAFETY: a claimed header is ours alone now (D2).
        unsafe { quarantine(header) };
    }
}

/// The block's usable size: what was asked for.
///
/// # Safety
/// `user` must be a live debug block.
pub unsafe fn usable_size(user: *const u8) -> usize {
    // SAFETY: the caller's contract.
    unsafe { (*header_of(user.cast_mut())).size }
}

/// Resizes `user` (null: allocates) through `domain`'s family: a new block, the bytes copied,
/// the old one freed. Null (and the old block untouched) on failure.
///
/// # Safety
/// As [`free`].
pub unsafe fn reallocate(domain: Domain, user: *mut u8, size: usize, align: usize) -> *mut u8 {
    if user.is_null() {
        return allocate(domain, size, align, false);
    }
    // A claimed block stays ours: its state is still LIVE, and the caller holds it.
    // SAFETY: `claim` checks the pointer before anything reads the block.
    unsafe {
        let Some(header) = claim(b"realloc", domain, user, false) else {
            return ptr::null_mut();
        };
        let moved = allocate(domain, size, align, false);
        if moved.is_null() {
            return moved;
        }
        ptr::copy_nonoverlapping(user, moved, size.min((*header).size));
        if (*header)
            .state
            .compare_exchange(LIVE, FREED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            quarantine(header);
        }
        moved
    }
}

/// Poisons a freed block, holds it back, and lets go of the oldest beyond the budget.
///
/// # Safety
/// `header` was just claimed for release (D2) and is on a live list.
unsafe fn quarantine(header: *mut Header) {
    // SAFETY: the caller's contract: the block is ours alone.
    unsafe {
        lists::remove_live(header);
        (*header).freed_at = crate::debug::backtrace::site_here(2) as usize;
        fill(user_of(header), DEAD_BYTE, (*header).size);
        // Blocks leaving the quarantine are on no list, as `release` needs.
        lists::quarantine(header, |oldest| {
            release(oldest, b"free (leaving quarantine)")
        });
    }
}

/// Checks a quarantined block's poison and gives it back to the core.
///
/// # Safety
/// `header` was in the quarantine and is on no list now.
unsafe fn release(header: *mut Header, call: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe {
        check_poison(header, call);
        (*header).state.store(RELEASED, Ordering::Release);
        let raw = user_of(header).sub((*header).lead as usize);
        crate::alloc::domain_heap::free_in_own_domain(Domain::from_stored((*header).domain), raw);
    }
}

/// # Safety
/// `header` is a quarantined block's.
unsafe fn check_poison(header: *mut Header, call: &[u8]) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let bytes = core::slice::from_raw_parts(user_of(header), (*header).size);
        if filled_with(bytes, DEAD_BYTE) {
            return true;
        }
        let described = Described::of(header);
        report(
            ErrorKind::WriteAfterFree,
            call,
            user_of(header) as usize,
            Some(described),
        );
        false
    }
}

/// Checks every live block's guards and every quarantined block's poison, reporting each
/// problem; returns how many blocks had one (`tm_debug_check`).
pub fn check_all() -> usize {
    if !active() {
        return 0;
    }
    let mut problems = 0;
    lists::for_each_live(|header| {
        // SAFETY: D3: headers on the list are live debug blocks.
        unsafe {
            let user = user_of(header);
            let described = || Described::of(header);
            if !filled_with(&(*header).front_guard, GUARD_BYTE) {
                problems += 1;
                report(
                    ErrorKind::WriteBeforeStart,
                    b"check",
                    user as usize,
                    Some(described()),
                );
            }
            let back = core::slice::from_raw_parts(user.add((*header).size), GUARD);
            if !filled_with(back, GUARD_BYTE) {
                problems += 1;
                report(
                    ErrorKind::WritePastEnd,
                    b"check",
                    user as usize,
                    Some(described()),
                );
            }
        }
    });
    lists::for_each_quarantined(|header| {
        // SAFETY: D3: headers in the quarantine are freed debug blocks.
        if !unsafe { check_poison(header, b"check") } {
            problems += 1;
        }
    });
    problems
}

#[cfg(test)]
mod tests {
    use super::filled_with;

    #[test]
    fn filled_with_finds_any_byte_that_differs() {
        for length in 0..300 {
            let mut bytes = vec![0xDD_u8; length];
            assert!(filled_with(&bytes, 0xDD), "{length} bytes");
            for position in 0..length {
                bytes[position] = 0xDC;
                assert!(!filled_with(&bytes, 0xDD), "{length} bytes, at {position}");
                bytes[position] = 0xDD;
            }
        }
    }
}
