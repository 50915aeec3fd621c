//! The exported C symbols: the standard names that replace the C library's, and the `tm_*`
//! names of `include/tallymalloc.h`. Each is one call into `contract.rs`, which holds the
//! behaviour; the header documents it.

use crate::contract;
use core::ffi::{c_int, c_void};

/// Exports one contract function under a standard name and its `tm_*` name.
macro_rules! export_twice {
    ($(#[$doc:meta])* $standard:ident, $prefixed:ident,
     ($($arg:ident: $type:ty),*) -> $ret:ty, $target:path, $safety:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        #[doc = $safety]
        #[no_mangle]
        pub unsafe extern "C" fn $standard($($arg: $type),*) -> $ret {
            #[allow(unused_unsafe)]
            // SAFETY: the caller keeps the C contract stated above.
            unsafe { $target($($arg),*) }
        }

        $(#[$doc])*
        ///
        /// # Safety
        #[doc = $safety]
        #[no_mangle]
        pub unsafe extern "C" fn $prefixed($($arg: $type),*) -> $ret {
            #[allow(unused_unsafe)]
            // SAFETY: the caller keeps the C contract stated above.
            unsafe { $target($($arg),*) }
        }
    };
}

export_twice!(
    /// Allocates `size` bytes.
    malloc, tm_malloc, (size: usize) -> *mut c_void, contract::malloc, "None beyond C's: the arguments are plain values.");
export_twice!(
    /// Allocates `count * size` zeroed bytes.
    calloc, tm_calloc, (count: usize, size: usize) -> *mut c_void, contract::calloc, "None beyond C's: the arguments are plain values.");
export_twice!(
    /// Resizes `block`, keeping its contents.
    realloc, tm_realloc, (block: *mut c_void, size: usize) -> *mut c_void, contract::realloc,
    "`block` must be NULL or a live block (a pointer that is not ours is reported, not used).");
export_twice!(
    /// Allocates `size` bytes aligned to `alignment`.
    aligned_alloc, tm_aligned_alloc, (alignment: usize, size: usize) -> *mut c_void,
    contract::aligned_alloc, "None beyond C's: the arguments are plain values.");
export_twice!(
    /// How many bytes `block` can hold.
    malloc_usable_size, tm_usable_size, (block: *const c_void) -> usize, contract::usable_size,
    "`block` must be NULL or a live block (a pointer that is not ours is reported, not used).");

/// Frees `block`.
///
/// # Safety
/// `block` must be NULL or a live block (a pointer that is not ours is reported, not used).
#[no_mangle]
pub unsafe extern "C" fn free(block: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { contract::free(block) }
}

/// Frees `block` (the `tm_*` name of `free`).
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn tm_free(block: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { contract::free(block) }
}

/// The obsolete name of `free`, for very old programs.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(block: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { contract::free(block) }
}

/// Resizes `block` to `count * size` bytes, failing on overflow.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(
    block: *mut c_void,
    count: usize,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { contract::reallocarray(block, count, size) }
}

/// Allocates `size` bytes aligned to `alignment` into `*result`; returns 0, EINVAL or ENOMEM.
///
/// # Safety
/// `result` must be valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    result: *mut *mut c_void,
    alignment: usize,
    size: usize,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { contract::posix_memalign(result, alignment, size) }
}

/// Allocates `size` bytes aligned to `alignment` (rounded up to a power of two).
#[no_mangle]
pub extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    contract::memalign(alignment, size)
}

/// Allocates `size` bytes aligned to the page size.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    contract::valloc(size)
}

/// Allocates `size` bytes rounded up to whole pages, aligned to the page size.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    contract::pvalloc(size)
}

/// Whether `address` lies in memory tallymalloc manages.
#[no_mangle]
pub extern "C" fn tm_is_ours(address: *const c_void) -> c_int {
    contract::is_ours(address)
}

/// Returns what the calling thread can give back to the OS now.
#[no_mangle]
pub extern "C" fn tm_collect() {
    contract::collect();
}
