//! CPython's allocator domains served by tallymalloc, through `PyMem_SetAllocator`.
//!
//! After the interpreter has started, CPython only supports allocators that wrap the one they
//! replace: blocks handed out before `install` stay the previous allocator's. So each domain's
//! hooks allocate from tallymalloc in the matching domain (raw, mem, obj) and, on free and
//! realloc, keep only blocks that are tallymalloc's *in that domain*; anything else goes back
//! to the saved previous allocator:
//! - a pointer tallymalloc does not know (pymalloc's arenas, glibc's heap) is the previous
//!   allocator's, whatever the domain;
//! - a mem or obj free of one of our *raw* blocks goes to the previous allocator when that
//!   allocator takes blocks from the raw domain itself: pymalloc does for requests over 512
//!   bytes (so after `install` its realloc of a small block to a large one returns one of our
//!   raw blocks), and when the process's `malloc` is tallymalloc's (preloaded), every block C
//!   code or pymalloc took from `malloc` before `install` is one. Such an allocator returns
//!   the block to the raw domain, where it belongs;
//! - any other block of ours in the wrong domain is a real family mismatch: tallymalloc
//!   reports and counts it, then frees it correctly.
//!
//! Invariants:
//! - **H1 previous**: a domain's saved previous allocator is written before its hooks are
//!   installed (under [`INSTALL_LOCK`], with the GIL held) and never changes after; a domain is
//!   installed at most once per process.
//! - **H2 ctx**: the hooks ignore their `ctx` argument, and are installed with the previous
//!   allocator's `ctx`. A thread that reads CPython's allocator struct while it is being
//!   replaced (3.11 copies it without a lock, and the raw domain runs without the GIL) may
//!   pair our functions with the old ctx or the old functions with their own ctx: both work.
//! - **H3 size zero**: CPython requires a distinct non-NULL block for zero bytes, and a
//!   realloc to zero must not free; the hooks ask tallymalloc for one byte then.
//! - Nothing here allocates except through the library or the previous allocator.

use crate::library::{self, Library};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};
use pyo3::ffi;
use std::sync::Mutex;

/// CPython's three domains, in tallymalloc's numbering (0, 1, 2 are raw, mem and obj there too).
pub const DOMAIN_NAMES: [&str; 3] = ["raw", "mem", "obj"];
const RAW: c_int = 0;

struct Previous([UnsafeCell<ffi::PyMemAllocatorEx>; 3]);
// SAFETY: H1: each slot is written once under INSTALL_LOCK before its hooks can run, then only
// read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous([const { UnsafeCell::new(EMPTY) }; 3]);
static INSTALLED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
/// Whether CPython's mem and obj allocators were pymalloc's (debug hooks or not) before the
/// first install, so they hand raw-domain blocks back to the raw domain. Set once, under
/// INSTALL_LOCK, before any hook is installed.
static PREVIOUS_IS_PYMALLOC: AtomicBool = AtomicBool::new(false);
static FIRST_INSTALL_DONE: AtomicBool = AtomicBool::new(false);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

const EMPTY: ffi::PyMemAllocatorEx = ffi::PyMemAllocatorEx {
    ctx: core::ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

fn cpython_domain(domain: c_int) -> ffi::PyMemAllocatorDomain {
    match domain {
        0 => ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_RAW,
        1 => ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_MEM,
        _ => ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ,
    }
}

/// Whether CPython's domain `domain` (0 raw, 1 mem, 2 obj) is served by tallymalloc.
pub fn is_installed(domain: usize) -> bool {
    INSTALLED[domain].load(Ordering::Acquire)
}

/// Makes tallymalloc serve CPython's domain `domain` (0 raw, 1 mem, 2 obj). Idempotent. The
/// caller holds the GIL and has loaded the library.
pub fn install(domain: usize) {
    let _guard = INSTALL_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if is_installed(domain) {
        return;
    }
    if !FIRST_INSTALL_DONE.swap(true, Ordering::Relaxed) {
        PREVIOUS_IS_PYMALLOC.store(current_allocator_is_pymalloc(), Ordering::Release);
    }
    let id = domain as c_int;
    let (malloc, calloc, realloc, free) = hooks_for(id);
    // PyMem_GetAllocator fills the slot before the hooks that read it are installed.
    // SAFETY: H1: under the lock and once (the flag is checked above), so nobody reads the slot.
    unsafe {
        let previous = PREVIOUS.0[domain].get();
        ffi::PyMem_GetAllocator(cpython_domain(id), previous);
        let mut ours = ffi::PyMemAllocatorEx {
            ctx: (*previous).ctx,
            malloc: Some(malloc),
            calloc: Some(calloc),
            realloc: Some(realloc),
            free: Some(free),
        };
        ffi::PyMem_SetAllocator(cpython_domain(id), &mut ours);
    }
    INSTALLED[domain].store(true, Ordering::Release);
}

/// Whether CPython's allocators are pymalloc's now ("pymalloc" or "pymalloc_debug"). The
/// function that says so is private (3.8 and later), so it is looked up, not linked: when it
/// is missing the answer is no, and our raw blocks freed through mem or obj are reported as
/// mismatches rather than handed to an allocator that might not take them.
fn current_allocator_is_pymalloc() -> bool {
    // SAFETY: dlsym only looks the name up.
    let address = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"_PyMem_GetCurrentAllocatorName".as_ptr(),
        )
    };
    if address.is_null() {
        return false;
    }
    // SAFETY: CPython's `const char *_PyMem_GetCurrentAllocatorName(void)`; the GIL is held.
    let name = unsafe {
        let function: extern "C" fn() -> *const core::ffi::c_char = core::mem::transmute(address);
        function()
    };
    if name.is_null() {
        return false;
    }
    // SAFETY: CPython returns a static NUL-terminated name.
    let name = unsafe { core::ffi::CStr::from_ptr(name) };
    name.to_bytes().starts_with(b"pymalloc")
}

type Malloc = extern "C" fn(*mut c_void, usize) -> *mut c_void;
type Calloc = extern "C" fn(*mut c_void, usize, usize) -> *mut c_void;
type Realloc = extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void;
type Free = extern "C" fn(*mut c_void, *mut c_void);

/// One set of hooks per domain, so no hook reads its `ctx` (H2).
macro_rules! domain_hooks {
    ($domain:literal, $malloc:ident, $calloc:ident, $realloc:ident, $free:ident) => {
        extern "C" fn $malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
            // SAFETY: the hook is only installed after the library is loaded (L1).
            unsafe { (library().malloc)($domain, size.max(1)) }
        }
        extern "C" fn $calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
            let (count, size) = if count == 0 || size == 0 {
                (1, 1)
            } else {
                (count, size)
            };
            // SAFETY: as above.
            unsafe { (library().calloc)($domain, count, size) }
        }
        extern "C" fn $realloc(_ctx: *mut c_void, block: *mut c_void, size: usize) -> *mut c_void {
            // SAFETY: CPython passes NULL or a live block of this domain (ours or previous).
            unsafe { reallocate($domain, block, size.max(1)) }
        }
        extern "C" fn $free(_ctx: *mut c_void, block: *mut c_void) {
            // SAFETY: as above.
            unsafe { release($domain, block) }
        }
    };
}

domain_hooks!(0, raw_malloc, raw_calloc, raw_realloc, raw_free);
domain_hooks!(1, mem_malloc, mem_calloc, mem_realloc, mem_free);
domain_hooks!(2, obj_malloc, obj_calloc, obj_realloc, obj_free);

fn hooks_for(domain: c_int) -> (Malloc, Calloc, Realloc, Free) {
    match domain {
        0 => (raw_malloc, raw_calloc, raw_realloc, raw_free),
        1 => (mem_malloc, mem_calloc, mem_realloc, mem_free),
        _ => (obj_malloc, obj_calloc, obj_realloc, obj_free),
    }
}

/// The loaded library, from a hook.
///
/// # Safety
/// Only hooks call it, and they are installed after the library is loaded (L1).
#[inline(always)]
unsafe fn library() -> &'static Library {
    // SAFETY: the caller's contract.
    unsafe { library::get().unwrap_unchecked() }
}

/// Who must handle a block that is not ours in `domain`.
enum Owner {
    /// The previous allocator of the domain.
    Previous,
    /// tallymalloc, which reports the family mismatch and handles the block correctly.
    Mismatched,
}

/// Who must handle a block of `owner` (a tallymalloc domain, or -1 for a block that is not
/// ours) freed or resized through CPython's `domain`, when the two differ (see the module
/// documentation for the rules).
fn owner_of_foreign(library: &Library, domain: c_int, owner: c_int) -> Owner {
    let previous_takes_raw = library.serves_malloc || PREVIOUS_IS_PYMALLOC.load(Ordering::Acquire);
    if owner < 0 || (owner == RAW && domain != RAW && previous_takes_raw) {
        Owner::Previous
    } else {
        Owner::Mismatched
    }
}

/// # Safety
/// `block` is NULL or a live block of CPython's `domain`.
#[inline(always)]
unsafe fn release(domain: c_int, block: *mut c_void) {
    // SAFETY: the hooks run after the library is loaded (L1).
    let library = unsafe { library() };
    // SAFETY: the caller's contract.
    if unsafe { (library.free_if_owned)(domain, block) } == 0 {
        // SAFETY: the caller's contract; free_if_owned only declines non-null blocks.
        unsafe { release_foreign(library, domain, block) }
    }
}

#[cold]
#[inline(never)]
unsafe fn release_foreign(library: &Library, domain: c_int, block: *mut c_void) {
    // SAFETY: the caller's contract: ours and live, or not ours.
    let owner = unsafe { (library.domain_of)(block) };
    match owner_of_foreign(library, domain, owner) {
        Owner::Previous => {
            // SAFETY: H1: the domain is installed, so its previous allocator is saved.
            let previous = unsafe { &*PREVIOUS.0[domain as usize].get() };
            if let Some(free) = previous.free {
                // The block is the previous allocator's, freed through its family.
                free(previous.ctx, block);
            }
        }
        // SAFETY: ours and live: the library reports the mismatch and frees it correctly.
        Owner::Mismatched => unsafe { (library.free)(domain, block) },
    }
}

/// # Safety
/// `block` is NULL or a live block of CPython's `domain`; `size` is not zero.
unsafe fn reallocate(domain: c_int, block: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the hooks run after the library is loaded (L1).
    let library = unsafe { library() };
    if block.is_null() {
        // SAFETY: a plain allocation.
        return unsafe { (library.malloc)(domain, size) };
    }
    // SAFETY: the caller's contract: ours and live, or not ours.
    let owner = unsafe { (library.domain_of)(block) };
    let foreign =
        owner != domain && matches!(owner_of_foreign(library, domain, owner), Owner::Previous);
    if foreign {
        // SAFETY: H1, and the block stays with the allocator that owns it.
        let previous = unsafe { &*PREVIOUS.0[domain as usize].get() };
        return match previous.realloc {
            // The previous allocator's block, resized through its family.
            Some(realloc) => realloc(previous.ctx, block, size),
            None => core::ptr::null_mut(),
        };
    }
    // SAFETY: ours and live (a mismatch is reported and the block moved into `domain`).
    unsafe { (library.realloc)(domain, block, size) }
}
