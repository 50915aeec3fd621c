//! The debug-mode API of `include/tallymalloc.h`: switching it on from the program, checking
//! every block on demand, and the stacks it captures.

use core::ffi::c_int;
use tallymalloc_core as core_allocator;

/// Turns debug mode on, as `TALLYMALLOC_DEBUG=1` does. Returns 0, or -1 with errno EBUSY when
/// the process has already allocated without it (every block must have the debug layout).
#[no_mangle]
pub extern "C" fn tm_debug_enable() -> c_int {
    if core_allocator::debug_enable() {
        0
    } else {
        core_allocator::set_errno(libc::EBUSY);
        -1
    }
}

/// In debug mode, checks the guard bytes of every live block and the poison of every
/// quarantined one, reporting each problem (and aborting unless TALLYMALLOC_ON_ERROR=report);
/// returns how many blocks had one. 0 outside debug mode.
#[no_mangle]
pub extern "C" fn tm_debug_check() -> usize {
    core_allocator::debug_check()
}

/// In debug mode, lists the blocks live now on stderr, by domain and by allocation site with
/// their stacks; returns how many there are (0 outside debug mode).
#[no_mangle]
pub extern "C" fn tm_leak_report() -> usize {
    core_allocator::debug_leak_report().0 as usize
}

/// Writes up to `size` return addresses of the calling thread into `frames`, innermost first
/// (the caller's own first), with debug mode's unwinder; returns how many, as glibc's
/// `backtrace` does. Allocates nothing and takes no lock once the frames' unwinding rules are
/// cached. At most 64 frames; 0 for a null `frames` or a `size` below 1.
///
/// # Safety
/// `frames` must be valid for `size` writes.
#[no_mangle]
#[inline(never)]
pub unsafe extern "C" fn tm_backtrace(frames: *mut *mut core::ffi::c_void, size: c_int) -> c_int {
    if frames.is_null() || size < 1 {
        return 0;
    }
    // A pointer and a usize have one size and alignment; this takes at most 64 of the slots.
    let slots = (size as usize).min(64);
    // SAFETY: the caller's contract: `frames` is valid for `size` writes.
    let frames = unsafe { core::slice::from_raw_parts_mut(frames.cast::<usize>(), slots) };
    // Past this function's own frame, so that the first lies in the caller.
    core_allocator::backtrace(frames, 1) as c_int
}
