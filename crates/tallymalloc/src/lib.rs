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
mod purge;
mod stats;

pub use alloc::buffer::{Buffer, OutOfMemory, RawBuffer};
pub use alloc::global::TallyMalloc;
pub use alloc::huge::MAX_ALIGN;
pub use alloc::size_class::LARGE_MAX;
pub use debug::diagnostics::{
    invalid_pointer_count, report_invalid_pointer, report_not_a_block_start, report_unknown_domain,
};
pub use debug::ErrorKind as DebugErrorKind;
pub use platform::fault::{injected_failures, set_plan as set_fault_plan, FaultPlan};
pub use platform::os::{set_errno, ErrnoGuard};
pub use policy::domain::{
    is_valid_name as is_valid_domain_name, on_mismatch, set_on_mismatch, Domain, DomainError,
    OnMismatch, MAX_DOMAINS, MAX_NAME_LEN as MAX_DOMAIN_NAME_LEN,
};
pub use policy::options::{
    on_error, purge_delay_millis, set_on_error, set_purge_delay_millis, OnError, StatsAtExit,
};
pub use purge::pace::purge_delay_in_force_millis;
pub use stats::report::Sink as StatsSink;
pub use stats::{
    DomainStats, HugeStats, ProcessStats, SizeClassStats, Stats, PUBLISH_STEP,
    SCHEMA_VERSION as STATS_SCHEMA_VERSION,
};

pub(crate) use platform::text::fatal;

use alloc::segment::{segment_of, SegmentKind};
use alloc::size_class::{class_alignment, class_of};
use core::ptr::{self, NonNull};

/// The alignment every block of more than 8 bytes has without asking.
pub const MIN_ALIGN: usize = 16;

/// Requests larger than this fail at once: no mapping could hold them, and rounding them up
/// must not overflow.
pub(crate) const MAX_REQUEST: usize = isize::MAX as usize - 2 * SEGMENT_SIZE_BYTES;
const SEGMENT_SIZE_BYTES: usize = alloc::segment::SEGMENT_SIZE;

/// Allocates `size` bytes. `None` when memory is exhausted or `size` is absurd.
#[inline]
pub fn malloc(size: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate(RAW, size, None))
}

/// Allocates `size` zeroed bytes.
#[inline]
pub fn zalloc(size: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate(RAW, size, Some(size)))
}

/// Allocates `count * size` zeroed bytes; `None` if the product overflows.
#[inline]
pub fn calloc(count: usize, size: usize) -> Option<NonNull<u8>> {
    match count.checked_mul(size) {
        Some(total) => zalloc(total),
        None => NonNull::new(size_overflow(b"calloc")),
    }
}

/// A count times a size that overflows: reported in debug mode, then null with ENOMEM.
#[cold]
pub fn size_overflow(call: &[u8]) -> *mut u8 {
    absurd_size(call, usize::MAX)
}

/// A request no memory can hold: reported in debug mode, then null with ENOMEM.
#[cold]
fn absurd_size(call: &[u8], size: usize) -> *mut u8 {
    if debug::active() {
        debug::report_absurd_size(call, size);
    }
    failed()
}

/// Every allocation failure ends here: null, with `errno` set to `ENOMEM`.
#[cold]
#[inline(never)]
pub(crate) fn failed() -> *mut u8 {
    platform::os::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

const RAW: usize = 0;
const _: () = assert!(Domain::RAW.id() == RAW);

/// Debug mode costs this path nothing: its pages are never current, so its requests all
/// reach `alloc::domain_heap::malloc_generic`, which hands them to `debug/`.
#[inline(always)]
fn allocate(domain: usize, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    // Small requests first: their path then tests the size once.
    if size <= alloc::size_class::SMALL_LOOKUP_MAX {
        alloc::domain_heap::malloc_small(domain, size, zero_bytes)
    } else if size <= LARGE_MAX {
        alloc::domain_heap::malloc_class(domain, class_of(size), size, zero_bytes)
    } else if size <= MAX_REQUEST {
        allocate_huge(domain, size, MIN_ALIGN, zero_bytes)
    } else {
        absurd_size(b"malloc", size)
    }
}

#[cold]
fn allocate_huge(domain: usize, size: usize, align: usize, zero_bytes: Option<usize>) -> *mut u8 {
    if debug::active() && !debug::in_layer() {
        return debug::allocate(domain, size, align, zero_bytes.is_some());
    }
    let block = alloc::huge::alloc(size, align, zero_bytes, domain);
    if !block.is_null() {
        // SAFETY: the block was just allocated.
        let usable = unsafe { huge_block_size(block) };
        alloc::domain_heap::count_huge_allocation(domain, usable);
    }
    block
}

/// The whole usable size of the huge block holding `address` (its page's block).
///
/// # Safety
/// `address` must be a live huge block.
unsafe fn huge_block_size(address: *const u8) -> usize {
    // SAFETY: the caller's contract: the huge header is mapped (U1).
    unsafe { (*segment_holding(address)).pages[0].block_size }
}

/// Allocates `size` bytes aligned to `align`, which must be a power of two no larger than
/// [`MAX_ALIGN`] (2^45); `None` otherwise or when memory is exhausted. Alignments from a
/// segment's (4 MiB) on get a mapping of their own placed for them.
pub fn aligned_alloc(size: usize, align: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate_aligned(RAW, size, align, None))
}

/// As [`aligned_alloc`], zeroed.
pub fn aligned_zalloc(size: usize, align: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate_aligned(RAW, size, align, Some(size)))
}

fn allocate_aligned(
    domain: usize,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    if !align.is_power_of_two() || align > MAX_ALIGN || size > MAX_REQUEST {
        return failed();
    }
    if align <= MIN_ALIGN {
        // Blocks of more than 8 bytes are 16-aligned; asking for at least `align` bytes
        // keeps 16-aligned requests out of the 8-byte class. (Debug mode takes these on the
        // slow path, as it does `allocate`'s.)
        let size = if align > 8 { size.max(align) } else { size };
        return allocate(domain, size, zero_bytes);
    }
    if debug::active() {
        return debug::allocate(domain, size, align, zero_bytes.is_some());
    }
    allocate_aligned_plain(domain, size, align, zero_bytes)
}

/// A core block for debug mode's layout. The caller (debug.rs) has marked its thread as inside
/// the debug layer, so the slow paths do not hand the request back to it.
pub(crate) fn allocate_core(domain: usize, size: usize, align: usize) -> *mut u8 {
    allocate_aligned_plain(domain, size, align, None)
}

/// A core block for debug mode whose address `lead` bytes in is aligned to `align`, a
/// segment's alignment or more: a huge block a lead short of the boundary (U6 in huge.rs).
pub(crate) fn allocate_core_led(domain: usize, size: usize, align: usize, lead: usize) -> *mut u8 {
    let block = alloc::huge::alloc_led(size, align, lead, None, domain);
    if !block.is_null() {
        // SAFETY: the block was just allocated.
        let usable = unsafe { huge_block_size(block) };
        alloc::domain_heap::count_huge_allocation(domain, usable);
    }
    block
}

fn allocate_aligned_plain(
    domain: usize,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    if align <= MIN_ALIGN {
        return allocate(domain, size.max(align), zero_bytes);
    }
    // A class whose blocks all fall on `align` boundaries costs nothing extra.
    let rounded = (size + align - 1) & !(align - 1);
    if rounded <= LARGE_MAX {
        let class = class_of(rounded);
        if class_alignment(class).min(alloc::segment::HEADER_RESERVE) >= align {
            return alloc::domain_heap::malloc_class(domain, class, rounded, zero_bytes);
        }
    }
    // Otherwise over-allocate and hand out an aligned address inside the block.
    let padded = size + align;
    if padded <= LARGE_MAX && align <= alloc::segment::HEADER_RESERVE {
        let block = alloc::domain_heap::malloc_class(
            domain,
            class_of(padded),
            padded,
            zero_bytes.map(|_| padded),
        );
        if block.is_null() {
            return block;
        }
        let aligned = ((block as usize + align - 1) & !(align - 1)) as *mut u8;
        if aligned != block {
            // SAFETY: `block` was just allocated by this thread.
            unsafe { alloc::domain_heap::mark_aligned(block) };
        }
        return aligned;
    }
    allocate_huge(domain, size, align, zero_bytes)
}

/// Frees a block. Null is ignored.
///
/// # Safety
/// `address` must be null or a live block from this allocator, not freed since.
#[inline]
pub unsafe fn free(address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { free_in(RAW, address) }
}

/// Frees a block (or null) through the `domain` family.
///
/// # Safety
/// As [`free`].
#[inline(always)]
unsafe fn free_in(domain: usize, address: *mut u8) {
    // A segment boundary is null or a block aligned beyond a segment (U6 in huge.rs): one test,
    // as cheap as the null test it replaces.
    if address as usize & alloc::segment::SEGMENT_MASK == 0 {
        if !free_on_boundary(domain, address) {
            report_invalid_pointer(b"free", address as usize);
        }
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { alloc::domain_heap::free(domain, address) }
}

/// Frees what [`free_in`] found on a segment boundary: nothing for null, else a block aligned
/// beyond a segment (or, in debug mode, whatever debug mode makes of it). Returns false, doing
/// nothing, for any other address.
#[cold]
#[inline(never)]
fn free_on_boundary(domain: usize, address: *mut u8) -> bool {
    if address.is_null() {
        return true;
    }
    if debug::active() {
        let _errno = platform::os::ErrnoGuard::save();
        // SAFETY: debug mode checks the pointer itself.
        unsafe { debug::free(domain, address) };
        return true;
    }
    match alloc::huge::over_aligned_segment(address as usize) {
        // SAFETY: the block's own huge segment; the caller frees a live block.
        Some(segment) => unsafe { alloc::domain_heap::free_huge_block(domain, segment, address) },
        None => return false,
    }
    true
}

/// The header of the segment of the live block `address`: masked, or for a block aligned
/// beyond a segment, found one segment before it (U6).
///
/// # Safety
/// `address` must be a live block of ours.
unsafe fn segment_holding(address: *const u8) -> *mut alloc::segment::Segment {
    if address as usize & alloc::segment::SEGMENT_MASK == 0 {
        if let Some(segment) = alloc::huge::over_aligned_segment(address as usize) {
            return segment;
        }
    }
    segment_of(address)
}

/// Frees `address` if it is one of our blocks and returns true; returns true for null too
/// (nothing to do) and false for any other address, which is left alone. One registry lookup
/// decides both (see `registry.rs`: null is never ours).
///
/// # Safety
/// If `address` is ours, it must be a live block, not freed since.
#[inline(always)]
pub unsafe fn free_checked(address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_checked_in(RAW, address) }
}

/// # Safety
/// As [`free_checked`].
#[inline(always)]
unsafe fn free_checked_in(domain: usize, address: *mut u8) -> bool {
    if alloc::registry::contains(address as usize) {
        // SAFETY: ours, and live by the caller's contract.
        unsafe { alloc::domain_heap::free(domain, address) };
        true
    } else {
        // Null, a block aligned beyond a segment (whose own slot is not registered, U6), or not
        // ours.
        free_on_boundary(domain, address)
    }
}

/// Resizes a block to `new_size` bytes, keeping its contents up to the smaller size. Stays in
/// place when the block's size class allows; otherwise moves the contents to a new block. On
/// failure returns `None` and the original block is untouched and still live. A null
/// `address` behaves as `malloc(new_size)`.
///
/// # Safety
/// `address` must be null or a live block from this allocator. On success it must no longer
/// be used (unless the same address is returned).
pub unsafe fn realloc(address: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
    // SAFETY: the caller's contract.
    unsafe { realloc_aligned(address, new_size, MIN_ALIGN) }
}

/// As [`realloc`], keeping the block aligned to `align` (as given when it was allocated).
///
/// # Safety
/// As [`realloc`]; `align` must be the alignment the block was allocated with, or smaller.
pub unsafe fn realloc_aligned(
    address: *mut u8,
    new_size: usize,
    align: usize,
) -> Option<NonNull<u8>> {
    // SAFETY: the caller's contract.
    NonNull::new(unsafe { reallocate(RAW, address, new_size, align) })
}

/// `realloc` through the `domain` family. A block of another domain is reported as a
/// mismatch, then moved into `domain` (the caller will free it through that family).
///
/// # Safety
/// As [`realloc_aligned`].
unsafe fn reallocate(domain: usize, address: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    if debug::active() {
        if new_size > MAX_REQUEST || !align.is_power_of_two() || align > MAX_ALIGN {
            return failed();
        }
        // SAFETY: debug mode checks the pointer itself.
        return unsafe { debug::reallocate(domain, address, new_size, align) };
    }
    if address.is_null() {
        return allocate_aligned(domain, new_size, align, None);
    }
    if new_size > MAX_REQUEST {
        return failed();
    }
    // SAFETY: the caller guarantees a live block of ours.
    let (usable, owner) = unsafe { (usable_size(address), block_domain(address)) };
    if owner != domain {
        policy::domain::mismatch(b"realloc", domain, owner, address as usize);
        return move_block(domain, owner, address, usable, new_size, align);
    }
    // SAFETY: the block is live, so its segment header is mapped.
    let segment = unsafe { segment_holding(address) };
    // SAFETY: as above.
    let is_huge = unsafe { (*segment).kind == SegmentKind::Huge };
    if is_huge && new_size > LARGE_MAX / 2 {
        // SAFETY: the caller owns the live huge block.
        unsafe {
            let old_size = (*segment).pages[0].block_size;
            let resized = alloc::huge::resize(segment, address, new_size);
            if !resized.is_null() {
                alloc::domain_heap::count_huge_resize(domain, old_size, huge_block_size(resized));
                return resized;
            }
            // A block aligned beyond a segment that cannot stay in place moves by copy (U6).
            if address as usize & alloc::segment::SEGMENT_MASK != 0 {
                return resized;
            }
        }
    }
    if new_size <= usable && (new_size >= usable / 2 || usable <= MIN_ALIGN) {
        return address;
    }
    // A block that outgrows its size class moves; make room for more growth than asked, so a
    // block grown a little at a time (CPython's lists by an eighth, string builders by what
    // they append) moves a few times instead of at every class. Room past what is written is
    // never touched, so it costs address space, not resident memory. Falls back to the exact
    // size when the larger block cannot be had.
    if new_size > usable && usable >= GROWTH_ROOM_FROM {
        let roomy = new_size.max(usable + usable / 2);
        let moved = move_block(domain, owner, address, usable, roomy, align);
        if !moved.is_null() {
            return moved;
        }
    }
    move_block(domain, owner, address, usable, new_size, align)
}

/// Blocks at least this large get growth room when `realloc` moves them to grow.
const GROWTH_ROOM_FROM: usize = 256;

/// Moves the `owner` block at `address` (`usable` bytes) into a new block of `domain`.
fn move_block(
    domain: usize,
    owner: usize,
    address: *mut u8,
    usable: usize,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    let moved = allocate_aligned(domain, new_size, align, None);
    if moved.is_null() {
        return moved;
    }
    // The old block goes back through its own family (the caller reported any mismatch).
    // SAFETY: both blocks are live and distinct; we copy what both can hold.
    unsafe {
        ptr::copy_nonoverlapping(address, moved, usable.min(new_size));
        free_owned_block(owner, address);
    }
    moved
}

/// The domain of the live block at `address` (of any kind, U6 included).
///
/// # Safety
/// `address` must be a live block of ours.
unsafe fn block_domain(address: *const u8) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        match alloc::huge::over_aligned_segment(address as usize) {
            Some(segment) => (*segment).pages[0].domain as usize,
            None => alloc::domain_heap::domain_of(address),
        }
    }
}

/// Frees the live block at `address` of `domain` (its own), of any kind, from any thread.
///
/// # Safety
/// `address` must be a live block of `domain`.
unsafe fn free_owned_block(domain: usize, address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe {
        match alloc::huge::over_aligned_segment(address as usize) {
            Some(segment) => alloc::domain_heap::free_huge_block(domain, segment, address),
            None => alloc::domain_heap::free_in_own_domain(domain, address),
        }
    }
}

/// How many bytes the block at `address` can hold: at least what was asked for.
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn usable_size(address: *const u8) -> usize {
    if debug::active() {
        // SAFETY: the caller's contract: a live block, so a debug block (D1).
        return unsafe { debug::usable_size(address) };
    }
    // SAFETY: the block is live, so its segment header and page are mapped and constant.
    unsafe {
        let segment = segment_holding(address);
        if (*segment).kind == SegmentKind::Huge {
            return alloc::huge::usable_size(segment, address);
        }
        let page = &*(*segment).page_of(address);
        let start = if page.flags() & alloc::page::FLAG_HAS_ALIGNED != 0 {
            page.block_start(address.cast_mut())
        } else {
            address.cast_mut()
        };
        page.block_size - (address as usize - start as usize)
    }
}

/// Whether `address` lies in memory tallymalloc manages: true for every live block it handed
/// out, false for null, the stack, other allocators' blocks, and unmapped memory. O(1), no lock.
pub fn is_ours(address: *const u8) -> bool {
    alloc::registry::contains(address as usize) || is_over_aligned_block(address as usize)
}

/// Whether `address` is a block aligned beyond a segment (U6 in huge.rs), or in debug mode a
/// debug block whose header lies in our memory just before such a boundary. Cold: only
/// addresses the registry does not know get here.
#[cold]
#[inline(never)]
fn is_over_aligned_block(address: usize) -> bool {
    if debug::active() {
        return address & alloc::segment::SEGMENT_MASK == 0
            && alloc::registry::contains(address.wrapping_sub(debug::HEADER_SIZE));
    }
    alloc::huge::over_aligned_segment(address).is_some()
}

/// Whether `address` is where one of our blocks starts (or lies in a block handed out at an
/// offset for alignment): what `free`, `realloc` and `usable_size` may be given. False for
/// addresses that are not ours and for those inside our memory that start no block (inside a
/// block, in a page's slack, in a segment's header), which the C library reports and ignores.
/// Blocks carry no mark of being live, so a freed block's start still counts. In debug mode
/// blocks are checked by debug mode itself, and this is true for every address of ours.
pub fn is_block_start(address: *const u8) -> bool {
    let address = address as usize;
    if !alloc::registry::contains(address) {
        return is_over_aligned_block(address);
    }
    // SAFETY: the registry says the address lies in a live segment of ours; only that
    // segment's header is read, never the memory at `address`.
    debug::active() || unsafe { alloc::domain_heap::is_block(address) }
}

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

/// Records one timeline sample now (the sampler does this every `TALLYMALLOC_STATS_INTERVAL`
/// milliseconds; tests and tools may add their own). Does nothing unless a sampler started.
pub fn take_timeline_sample() {
    stats::timeline::take_sample();
}

/// The domain of the live block at `address`.
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn domain_of(address: *const u8) -> Domain {
    // SAFETY: the caller's contract; every page's domain is registered.
    Domain::from_id(unsafe { block_domain(address) }).unwrap_or(Domain::RAW)
}

/// Frees the live block at `address` through the family it belongs to, whatever that is
/// (for callers that name no valid family, after reporting their mistake).
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn free_in_own_domain(address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe {
        if debug::active() {
            return debug::free(debug::domain_of(address), address);
        }
        free_owned_block(block_domain(address), address)
    }
}

/// The allocator families, as Rust methods. Each returns `None` (with `errno` set) on failure,
/// as the crate-level functions do.
impl Domain {
    /// Allocates `size` bytes in this domain.
    #[inline]
    pub fn alloc(self, size: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate(self.id(), size, None))
    }

    /// Allocates `size` zeroed bytes in this domain.
    #[inline]
    pub fn zalloc(self, size: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate(self.id(), size, Some(size)))
    }

    /// Allocates `count * size` zeroed bytes; `None` if the product overflows.
    #[inline]
    pub fn calloc(self, count: usize, size: usize) -> Option<NonNull<u8>> {
        match count.checked_mul(size) {
            Some(total) => self.zalloc(total),
            None => NonNull::new(size_overflow(b"calloc")),
        }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two up to [`MAX_ALIGN`]).
    pub fn aligned_alloc(self, size: usize, align: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate_aligned(self.id(), size, align, None))
    }

    /// Resizes a block of this domain as [`realloc`] does. A block of another domain is
    /// reported as a mismatch and moved into this one.
    ///
    /// # Safety
    /// As [`realloc`].
    pub unsafe fn realloc(self, address: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's contract.
        NonNull::new(unsafe { reallocate(self.id(), address, new_size, MIN_ALIGN) })
    }

    /// Frees a block of this domain. Null is ignored. A block of another domain is reported as
    /// a mismatch (see [`OnMismatch`]) and still freed correctly.
    ///
    /// # Safety
    /// `address` must be null or a live block from this allocator.
    #[inline]
    pub unsafe fn free(self, address: *mut u8) {
        // SAFETY: the caller's contract.
        unsafe { free_in(self.id(), address) }
    }

    /// Frees `address` and returns true when it is a live block of this domain (or null);
    /// returns false and leaves it alone when it is another domain's block or not ours at all.
    /// For allocators that wrap another one and must hand its blocks back to it.
    ///
    /// # Safety
    /// If `address` is ours, it must be a live block, not freed since.
    #[inline]
    pub unsafe fn free_if_owned(self, address: *mut u8) -> bool {
        if !alloc::registry::contains(address as usize) {
            return address.is_null()
                || (is_over_aligned_block(address as usize)
                    // SAFETY: ours, and live by the caller's contract.
                    && unsafe { block_domain(address) } == self.id()
                    && free_on_boundary(self.id(), address));
        }
        // SAFETY: ours, and live by the caller's contract.
        unsafe { alloc::domain_heap::free_if_of(self.id(), address) }
    }

    /// As [`free_checked`], through this domain's family.
    ///
    /// # Safety
    /// If `address` is ours, it must be a live block, not freed since.
    pub unsafe fn free_checked(self, address: *mut u8) -> bool {
        // SAFETY: the caller's contract.
        unsafe { free_checked_in(self.id(), address) }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn fill(block: NonNull<u8>, len: usize, seed: u8) {
        // SAFETY: the caller passes a live block of at least `len` bytes.
        unsafe {
            for offset in 0..len {
                *block.as_ptr().add(offset) = seed.wrapping_add(offset as u8);
            }
        }
    }

    fn check(block: NonNull<u8>, len: usize, seed: u8) {
        // SAFETY: as in `fill`.
        unsafe {
            for offset in 0..len {
                assert_eq!(*block.as_ptr().add(offset), seed.wrapping_add(offset as u8));
            }
        }
    }

    #[test]
    fn blocks_of_every_kind_are_usable_and_distinct() {
        let sizes = [
            0, 1, 8, 9, 16, 100, 1000, 4096, 10_000, 70_000, 300_000, LARGE_MAX,
        ];
        let sizes = sizes.iter().chain(&[LARGE_MAX + 1, 3 << 20, 20 << 20]);
        let mut live = Vec::new();
        let mut starts = HashSet::new();
        for (index, &size) in sizes.enumerate() {
            let block = malloc(size).expect("malloc");
            assert!(is_ours(block.as_ptr()));
            let alignment = if size <= 8 { 8 } else { MIN_ALIGN };
            assert_eq!(block.as_ptr() as usize % alignment, 0, "size {size}");
            // SAFETY: live block.
            assert!(unsafe { usable_size(block.as_ptr()) } >= size);
            fill(block, size, index as u8);
            assert!(starts.insert(block.as_ptr() as usize));
            live.push((block, size, index as u8));
        }
        for (block, size, seed) in live {
            check(block, size, seed);
            // SAFETY: live block, freed once.
            unsafe { free(block.as_ptr()) };
        }
    }

    #[test]
    fn absurd_requests_fail_cleanly() {
        assert!(malloc(usize::MAX).is_none());
        assert!(malloc(isize::MAX as usize).is_none());
        assert!(calloc(usize::MAX / 2, 3).is_none());
        assert!(calloc(1 << 40, 1 << 40).is_none());
        assert!(aligned_alloc(64, 3).is_none());
        assert!(aligned_alloc(64, 0).is_none());
        assert!(aligned_alloc(64, MAX_ALIGN * 2).is_none());
        assert!(aligned_alloc(usize::MAX - 10, 4096).is_none());
        let block = malloc(100).unwrap();
        // SAFETY: live block; a failed realloc leaves it live.
        unsafe {
            fill(block, 100, 3);
            assert!(realloc(block.as_ptr(), usize::MAX).is_none());
            check(block, 100, 3);
            free(block.as_ptr());
        }
    }

    #[test]
    fn foreign_addresses_are_not_ours() {
        let local = 0u8;
        assert!(!is_ours(&local));
        assert!(!is_ours(ptr::null()));
        let boxed = Box::new(1u64); // the system allocator in unit tests
        assert!(!is_ours(&*boxed as *const u64 as *const u8));
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_recycled() {
        for size in [8, 24, 200, 5000, 100_000, 600_000] {
            let dirty: Vec<_> = (0..50).map(|_| malloc(size).unwrap()).collect();
            for &block in &dirty {
                // SAFETY: live block of `size` bytes.
                unsafe { ptr::write_bytes(block.as_ptr(), 0xEE, size) };
            }
            for block in dirty {
                // SAFETY: live block.
                unsafe { free(block.as_ptr()) };
            }
            for _ in 0..60 {
                let block = calloc(1, size).unwrap();
                // SAFETY: live block of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), size) };
                assert!(bytes.iter().all(|&b| b == 0), "size {size}");
                // SAFETY: live block.
                unsafe { free(block.as_ptr()) };
            }
        }
    }

    #[test]
    fn alignments_beyond_a_segment_work_through_global_alloc() {
        use core::alloc::{GlobalAlloc, Layout};
        let mut align = 1usize << 20;
        while align <= 1 << 30 {
            for size in [1, 100, 5 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: GlobalAlloc's contract: the layout's size is not zero; each block is
                // used within its size and freed once with its layout.
                unsafe {
                    let block = TallyMalloc.alloc(layout);
                    assert!(
                        !block.is_null() && block as usize % align == 0,
                        "{align} {size}"
                    );
                    assert!(is_ours(block) && is_block_start(block));
                    assert!(usable_size(block) >= size);
                    block.write_bytes(7, size);
                    let grown = TallyMalloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0);
                    assert_eq!(*grown.add(size - 1), 7);
                    assert_eq!(domain_of(grown), Domain::RAW);
                    grown.add(size * 3 - 1).write(1);
                    let layout = Layout::from_size_align(size * 3, align).unwrap();
                    TallyMalloc.dealloc(grown, layout);
                }
            }
            align *= 2;
        }
    }

    #[test]
    fn every_alignment_up_to_the_maximum_is_honoured() {
        let mut align = 1;
        while align <= 8 << 20 {
            for size in [0, 1, 7, 24, 100, 1000, 70_000, 600_000] {
                let block = aligned_alloc(size, align).expect("aligned_alloc");
                assert_eq!(
                    block.as_ptr() as usize % align,
                    0,
                    "align {align} size {size}"
                );
                // SAFETY: live block.
                unsafe {
                    assert!(usable_size(block.as_ptr()) >= size);
                    fill(block, size, 9);
                    let grown = realloc_aligned(block.as_ptr(), size * 2 + 1, align).unwrap();
                    assert_eq!(grown.as_ptr() as usize % align, 0);
                    check(grown, size, 9);
                    free(grown.as_ptr());
                }
            }
            align *= 2;
        }
    }

    #[test]
    fn realloc_keeps_contents_across_every_kind() {
        let steps = [
            1,
            20,
            200,
            3000,
            40_000,
            400_000,
            900_000,
            9 << 20,
            50 << 20,
        ];
        let mut block = malloc(1).unwrap();
        fill(block, 1, 1);
        let mut kept = 1;
        for &size in steps.iter().chain(steps.iter().rev()) {
            // SAFETY: `block` is live.
            block = unsafe { realloc(block.as_ptr(), size) }.unwrap();
            kept = kept.min(size);
            check(block, kept, 1);
            fill(block, size, 1);
            kept = size;
        }
        // SAFETY: live block.
        unsafe { free(block.as_ptr()) };
    }

    #[test]
    fn realloc_stays_in_place_within_the_class() {
        let block = malloc(100).unwrap();
        // SAFETY: live block; class of 100 is 112 bytes.
        unsafe {
            assert_eq!(realloc(block.as_ptr(), 112), Some(block));
            assert_eq!(realloc(block.as_ptr(), 60), Some(block));
            free(block.as_ptr());
        }
    }

    #[test]
    fn a_block_grown_an_eighth_at_a_time_moves_rarely() {
        let mut size = 1000usize;
        let mut block = crate::malloc(size).unwrap().as_ptr();
        let mut moves = 0;
        // SAFETY: each block is live and `size` bytes long; the old one is gone once moved.
        unsafe {
            block.write_bytes(7, size);
            while size < (1 << 20) {
                size += size / 8;
                let grown = crate::realloc(block, size).unwrap().as_ptr();
                moves += usize::from(grown != block);
                assert_eq!(*grown.add(size / 9), 7, "contents kept");
                grown.add(size / 9 * 8).write_bytes(7, size - size / 9 * 8);
                block = grown;
            }
            crate::free(block);
        }
        // Four classes per doubling would move about 40 times on the way to 1 MiB; half again
        // as much room at each move takes about 17 (huge blocks grow in place by mremap).
        assert!(moves <= 20, "{moves} moves");
    }

    #[test]
    fn huge_blocks_grow_by_remapping() {
        let size = 8 << 20;
        let block = malloc(size).unwrap();
        // SAFETY: live huge block; each realloc hands it on.
        unsafe {
            *block.as_ptr() = 1;
            *block.as_ptr().add(size - 1) = 2;
            let grown = realloc(block.as_ptr(), 64 << 20).unwrap();
            assert_eq!(grown.as_ptr() as usize % MIN_ALIGN, 0);
            assert!(is_ours(grown.as_ptr()));
            assert_eq!(*grown.as_ptr(), 1);
            assert_eq!(*grown.as_ptr().add(size - 1), 2);
            assert!(usable_size(grown.as_ptr()) >= 64 << 20);
            let shrunk = realloc(grown.as_ptr(), 2 << 20).unwrap();
            assert_eq!(shrunk, grown, "shrinking a huge block stays in place");
            assert!(usable_size(shrunk.as_ptr()) < 3 << 20);
            free(shrunk.as_ptr());
        }
    }

    #[test]
    fn blocks_freed_by_another_thread_are_reused() {
        // Allocate on a worker, free here; then the worker's heap gets them back.
        let blocks: Vec<usize> = std::thread::spawn(|| {
            (0..10_000)
                .map(|_| malloc(48).unwrap().as_ptr() as usize)
                .collect()
        })
        .join()
        .unwrap();
        for &block in &blocks {
            // SAFETY: live blocks, each freed once, from a thread that does not own them.
            unsafe { free(block as *mut u8) };
        }
        collect();
    }
}
