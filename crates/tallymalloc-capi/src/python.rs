//! CPython's allocator functions for its raw, mem and obj domains, ready for
//! `PyMem_SetAllocator`: the Python package installs these, so that `PyObject_Malloc` reaches
//! the core in one call instead of going through a hook of the package's own first (that hop
//! cost 11 to 15 instructions a call, which is what kept us behind pymalloc).
//!
//! They serve the common case only: a block of ours in their domain. Any other block (the
//! previous allocator's, or ours in another domain) goes to the fallbacks the package
//! registers with [`tm_python_set_fallbacks`], which know CPython's previous allocator and
//! the rules for blocks that change hands (crates/tallymalloc-py/src/hooks.rs).
//!
//! Invariants:
//! - **Y1**: the fallbacks are registered before any of these functions is installed, and
//!   never change afterwards (the package registers them once, under its install lock).
//! - **Y2**: the functions ignore `ctx`, so they work with whatever `ctx` CPython pairs them
//!   with (see the package's H2).
//! - CPython requires a distinct non-NULL block for zero bytes and a realloc to zero that does
//!   not free, so zero sizes are served as one byte.

use crate::contract::or_null;
use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use tallymalloc_core::{self as core_allocator, Domain};

/// Frees a block that is not ours in `domain` (C: `void (*)(int domain, void *block)`).
pub type FallbackFree = unsafe extern "C" fn(c_int, *mut c_void);
/// Resizes such a block (C: `void *(*)(int domain, void *block, size_t size)`).
pub type FallbackRealloc = unsafe extern "C" fn(c_int, *mut c_void, usize) -> *mut c_void;

static FALLBACK_FREE: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
static FALLBACK_REALLOC: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// CPython's `PyMemAllocatorEx` without its `ctx`: the four functions of one domain.
#[repr(C)]
pub struct PythonFunctions {
    pub malloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    pub calloc: unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void,
    pub realloc: unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void,
    pub free: unsafe extern "C" fn(*mut c_void, *mut c_void),
}

/// Registers the functions that take blocks not ours in the calling domain (Y1).
#[no_mangle]
pub extern "C" fn tm_python_set_fallbacks(free: FallbackFree, realloc: FallbackRealloc) {
    FALLBACK_FREE.store(free as *mut (), Ordering::Release);
    FALLBACK_REALLOC.store(realloc as *mut (), Ordering::Release);
}

/// Fills `functions` with the allocator functions of CPython's `domain` (0 raw, 1 mem, 2 obj)
/// and returns 0; returns -1 with errno EINVAL for another domain or a NULL `functions`.
///
/// # Safety
/// `functions` must be NULL or point to writable memory for a `PythonFunctions`.
#[no_mangle]
pub unsafe extern "C" fn tm_python_functions(
    domain: c_int,
    functions: *mut PythonFunctions,
) -> c_int {
    let chosen = match domain {
        0 => raw::FUNCTIONS,
        1 => mem::FUNCTIONS,
        2 => obj::FUNCTIONS,
        _ => {
            core_allocator::set_errno(libc::EINVAL);
            return -1;
        }
    };
    if functions.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract.
    unsafe { functions.write(chosen) };
    0
}

/// # Safety
/// `block` must be a live block of CPython's `domain` that is not tallymalloc's in that domain
/// (the fallback's own contract, Y1).
#[cold]
#[inline(never)]
unsafe fn fallback_free(domain: Domain, block: *mut c_void) {
    let free = FALLBACK_FREE.load(Ordering::Acquire);
    if !free.is_null() {
        // SAFETY: Y1: a FallbackFree registered before this function could be installed.
        unsafe {
            let free: FallbackFree = core::mem::transmute(free);
            free(domain.id() as c_int, block);
        }
    }
}

/// # Safety
/// As [`fallback_free`], and `size` is not zero.
#[cold]
#[inline(never)]
unsafe fn fallback_realloc(domain: Domain, block: *mut c_void, size: usize) -> *mut c_void {
    let realloc = FALLBACK_REALLOC.load(Ordering::Acquire);
    if realloc.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: Y1: a FallbackRealloc registered before this function could be installed.
    unsafe {
        let realloc: FallbackRealloc = core::mem::transmute(realloc);
        realloc(domain.id() as c_int, block, size)
    }
}

/// The four functions of one domain, with the domain a constant in each (Y2).
macro_rules! python_domain {
    ($module:ident, $domain:expr) => {
        mod $module {
            use super::*;

            pub const FUNCTIONS: PythonFunctions = PythonFunctions {
                malloc,
                calloc,
                realloc,
                free,
            };

            unsafe extern "C" fn malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
                or_null($domain.alloc(size.max(1)))
            }

            unsafe extern "C" fn calloc(
                _ctx: *mut c_void,
                count: usize,
                size: usize,
            ) -> *mut c_void {
                let (count, size) = if count == 0 || size == 0 {
                    (1, 1)
                } else {
                    (count, size)
                };
                or_null($domain.calloc(count, size))
            }

            unsafe extern "C" fn realloc(
                _ctx: *mut c_void,
                block: *mut c_void,
                size: usize,
            ) -> *mut c_void {
                let size = size.max(1);
                if block.is_null() {
                    return or_null($domain.alloc(size));
                }
                // CPython passes a live block of this domain: ours, or the previous
                // allocator's.
                // SAFETY: ours and live when `is_ours` says so; on failure it is untouched.
                unsafe {
                    if core_allocator::is_ours(block.cast())
                        && core_allocator::domain_of(block.cast()) == $domain
                    {
                        return or_null($domain.realloc(block.cast(), size));
                    }
                    fallback_realloc($domain, block, size)
                }
            }

            unsafe extern "C" fn free(_ctx: *mut c_void, block: *mut c_void) {
                // SAFETY: CPython passes NULL or a live block of this domain (ours or not).
                unsafe {
                    if !$domain.free_if_owned(block.cast()) {
                        fallback_free($domain, block);
                    }
                }
            }
        }
    };
}

python_domain!(raw, Domain::RAW);
python_domain!(mem, Domain::MEM);
python_domain!(obj, Domain::OBJ);
