//! The debug-mode API of `include/tallymalloc.h`: switching it on from the program, and
//! checking every block on demand.

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
