//! The C contract on top of the core: `NULL` plus `errno`, argument checks, and invalid
//! pointers reported instead of followed. Each function here backs both a standard name and a
//! `tm_*` name (`exports.rs`); the rules are stated in `include/tallymalloc.h`.

use core::ffi::{c_int, c_void};
use core::mem::size_of;
use core::ptr;
use tallymalloc_core as core_allocator;

#[inline(always)]
fn out_of_memory() -> *mut c_void {
    core_allocator::set_errno(libc::ENOMEM);
    ptr::null_mut()
}

/// The core sets `errno` to ENOMEM on every failure, so its result passes through as it is
/// (which lets `malloc` tail-call the slow path instead of checking the result).
#[inline(always)]
pub(crate) fn or_null(block: Option<ptr::NonNull<u8>>) -> *mut c_void {
    block.map_or(ptr::null_mut(), |block| block.as_ptr().cast())
}

/// Whether `block` may be passed to the core: ours, and the start of a block. Reports it (and
/// maybe aborts) if not.
#[inline(always)]
pub fn accept(function: &[u8], block: *const c_void) -> bool {
    if core_allocator::is_block_start(block.cast()) {
        true
    } else if core_allocator::is_ours(block.cast()) {
        core_allocator::report_not_a_block_start(function, block as usize);
        false
    } else {
        core_allocator::report_invalid_pointer(function, block as usize);
        false
    }
}

#[inline(always)]
pub fn malloc(size: usize) -> *mut c_void {
    or_null(core_allocator::malloc(size))
}

#[inline(always)]
pub fn calloc(count: usize, size: usize) -> *mut c_void {
    or_null(core_allocator::calloc(count, size))
}

/// # Safety
/// `block` must be null, or not ours (reported), or a live block of ours.
#[inline(always)]
pub unsafe fn free(block: *mut c_void) {
    // SAFETY: if the registry says the block is ours, the caller promises it is live.
    unsafe { core_allocator::free_or_report(block.cast()) }
}

/// # Safety
/// As [`free`].
pub unsafe fn realloc(block: *mut c_void, size: usize) -> *mut c_void {
    if block.is_null() {
        return malloc(size);
    }
    if !accept(b"realloc", block) {
        core_allocator::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    if size == 0 {
        // glibc's behaviour, which programs written against it rely on.
        // SAFETY: a live block of ours.
        unsafe { core_allocator::free(block.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: a live block of ours; on failure it is untouched.
    or_null(unsafe { core_allocator::realloc(block.cast(), size) })
}

/// # Safety
/// As [`free`].
pub unsafe fn reallocarray(block: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { realloc(block, total) },
        None => core_allocator::size_overflow(b"reallocarray").cast(),
    }
}

/// Aligned allocation for callers whose alignment is already checked to be a power of two.
#[inline]
fn aligned(alignment: usize, size: usize) -> *mut c_void {
    or_null(core_allocator::aligned_alloc(size, alignment))
}

pub fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        core_allocator::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(alignment, size)
}

/// # Safety
/// `result` must be valid for a pointer-sized write.
pub unsafe fn posix_memalign(result: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    if !alignment.is_power_of_two() || !alignment.is_multiple_of(size_of::<*mut c_void>()) {
        return libc::EINVAL;
    }
    // posix_memalign reports through its result, not errno: keep errno as it was.
    let block = {
        let _errno = core_allocator::ErrnoGuard::save();
        aligned(alignment, size)
    };
    if block.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller gives us a writable pointer slot.
    unsafe { *result = block };
    0
}

pub fn memalign(alignment: usize, size: usize) -> *mut c_void {
    match alignment.checked_next_power_of_two() {
        Some(alignment) => aligned(alignment.max(1), size),
        None => {
            core_allocator::set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

pub fn valloc(size: usize) -> *mut c_void {
    aligned(core_allocator::page_size(), size)
}

pub fn pvalloc(size: usize) -> *mut c_void {
    let page = core_allocator::page_size();
    match size.checked_add(page - 1) {
        Some(end) => aligned(page, (end & !(page - 1)).max(page)),
        None => out_of_memory(),
    }
}

/// # Safety
/// As [`free`].
pub unsafe fn usable_size(block: *const c_void) -> usize {
    if block.is_null() || !accept(b"malloc_usable_size", block) {
        return 0;
    }
    // SAFETY: a live block of ours.
    unsafe { core_allocator::usable_size(block.cast()) }
}

pub fn is_ours(address: *const c_void) -> c_int {
    core_allocator::is_ours(address.cast()) as c_int
}

pub fn collect() {
    core_allocator::collect();
}
