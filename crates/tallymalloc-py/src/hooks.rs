//! CPython's allocator domains served by tallymalloc, through `PyMem_SetAllocator`.
//!
//! After the interpreter has started, CPython only supports allocators that wrap the one they
//! replace: blocks handed out before `install` stay the previous allocator's. So each domain's
//! functions allocate from tallymalloc in the matching domain (raw, mem, obj) and, on free and
//! realloc, keep only blocks that are tallymalloc's *in that domain*. Those functions are the
//! library's own (`tm_python_functions`), so a call reaches the allocator without a hop
//! through this extension; for any other block they call back here (the fallbacks below),
//! which hand it back to the saved previous allocator:
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
//! The previous allocator must outlive our blocks in CPython's table. A hook that puts back
//! what it wrapped would break that: `tracemalloc.stop()` restores the allocators it found at
//! its start. So the package's `install()` stops a tracing tracemalloc first and starts it
//! again after (`python/tallymalloc/__init__.py`): the previous allocator saved here is then
//! never tracemalloc's, and tracemalloc wraps us.
//!
//! Invariants:
//! - **H1 previous**: a domain's saved previous allocator is written before its functions are
//!   installed (under [`INSTALL_LOCK`], with the GIL held) and never changes after; a domain is
//!   installed at most once per process.
//! - **H2 ctx**: the functions ignore their `ctx` argument, and are installed with the previous
//!   allocator's `ctx`. A thread that reads CPython's allocator struct while it is being
//!   replaced (3.11 copies it without a lock, and the raw domain runs without the GIL) may
//!   pair our functions with the old ctx or the old functions with their own ctx: both work.
//! - **H3 fallbacks**: the library's functions call [`fallback_free`] and
//!   [`fallback_realloc`], registered before the first domain is installed, for any block
//!   that is not theirs. (Zero sizes are the library's to round up to one byte.)
//! - Nothing here allocates except through the library or the previous allocator.

use crate::library::{self, Library, PythonFunctions};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};
use pyo3::ffi;
use std::sync::Mutex;

/// CPython's three domains, in tallymalloc's numbering (0, 1, 2 are raw, mem and obj there too).
pub const DOMAIN_NAMES: [&str; 3] = ["raw", "mem", "obj"];
const RAW: c_int = 0;

struct Previous([UnsafeCell<ffi::PyMemAllocatorEx>; 3]);
// SAFETY: H1: each slot is written once under INSTALL_LOCK before its functions run, then only
// read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous([const { UnsafeCell::new(EMPTY) }; 3]);
static INSTALLED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];
/// Whether CPython's mem and obj allocators were pymalloc's (debug hooks or not) before the
/// first install, so they hand raw-domain blocks back to the raw domain. Set once, under
/// INSTALL_LOCK, before any domain is installed.
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
    // SAFETY: the caller has loaded the library.
    let library = unsafe { library() };
    if !FIRST_INSTALL_DONE.swap(true, Ordering::Relaxed) {
        PREVIOUS_IS_PYMALLOC.store(current_allocator_is_pymalloc(), Ordering::Release);
        // H3: before any of the library's functions is installed.
        // SAFETY: two functions with the signatures tm_python_set_fallbacks takes.
        unsafe { (library.python_set_fallbacks)(fallback_free, fallback_realloc) };
    }
    let id = domain as c_int;
    let mut functions = MaybeUninit::<PythonFunctions>::uninit();
    // SAFETY: a domain the library knows (0, 1 or 2), and room for its answer.
    if unsafe { (library.python_functions)(id, functions.as_mut_ptr()) } != 0 {
        unreachable!("the library serves CPython's three domains");
    }
    // SAFETY: filled by the call above, which returned 0.
    let functions = unsafe { functions.assume_init() };
    // PyMem_GetAllocator fills the slot before the functions that read it are installed.
    // SAFETY: H1: under the lock and once (the flag is checked above), so nobody reads the slot.
    unsafe {
        let previous = PREVIOUS.0[domain].get();
        ffi::PyMem_GetAllocator(cpython_domain(id), previous);
        let mut ours = ffi::PyMemAllocatorEx {
            ctx: (*previous).ctx,
            malloc: Some(functions.malloc),
            calloc: Some(functions.calloc),
            realloc: Some(functions.realloc),
            free: Some(functions.free),
        };
        ffi::PyMem_SetAllocator(cpython_domain(id), &mut ours);
    }
    INSTALLED[domain].store(true, Ordering::Release);
    crate::profile::register_frame_source();
}

/// Whether CPython's allocators are pymalloc's now ("pymalloc" or "pymalloc_debug"). When
/// the answer is unknown it is no, and our raw blocks freed through mem or obj are reported as
/// mismatches rather than handed to an allocator that might not take them.
fn current_allocator_is_pymalloc() -> bool {
    current_allocator_name().is_some_and(|name| name.to_bytes().starts_with(b"pymalloc"))
}

/// The name CPython gives the allocators it has now ("pymalloc", "malloc", "pymalloc_debug",
/// "malloc_debug"), or None when they are not CPython's own: a hook installed with
/// `PyMem_SetAllocator` (tracemalloc's, a test's, ours), or a CPython without the function
/// that says. The function is private (3.8 and later), so it is looked up, not linked. The
/// GIL is held.
pub fn current_allocator_name() -> Option<&'static core::ffi::CStr> {
    // SAFETY: dlsym only looks the name up.
    let address = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"_PyMem_GetCurrentAllocatorName".as_ptr(),
        )
    };
    if address.is_null() {
        return None;
    }
    // SAFETY: CPython's `const char *_PyMem_GetCurrentAllocatorName(void)`; the GIL is held.
    let name = unsafe {
        let function: extern "C" fn() -> *const core::ffi::c_char = core::mem::transmute(address);
        function()
    };
    // SAFETY: CPython returns null or a static NUL-terminated name.
    (!name.is_null()).then(|| unsafe { core::ffi::CStr::from_ptr(name) })
}

/// The loaded library, for `install` and the fallbacks.
///
/// # Safety
/// The library must be loaded (L1): `install`'s caller loads it, and the fallbacks are only
/// registered by `install`.
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

/// The library's fallback for a free of `block`, a live non-null block of CPython's `domain`
/// that is not tallymalloc's in that domain (H3).
unsafe extern "C" fn fallback_free(domain: c_int, block: *mut c_void) {
    // SAFETY: the library is loaded before its functions are installed (L1).
    let library = unsafe { library() };
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

/// The library's fallback for a realloc of `block`, a live non-null block of CPython's
/// `domain` that is not tallymalloc's in that domain, to `size` (not zero) bytes (H3).
unsafe extern "C" fn fallback_realloc(
    domain: c_int,
    block: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: the library is loaded before its functions are installed (L1).
    let library = unsafe { library() };
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
