//! `_exit` and `_Exit`, which replace the C library's so that a process leaving without its
//! exit handlers (a forked worker of Python's multiprocessing calls `os._exit`, a forking
//! server's child calls `_exit`) still writes the stats and profile it was asked for; then the
//! process ends as the C library's `_exit` ends it, with `exit_group`.
//!
//! Invariants: nothing here allocates; the exit itself is a raw system call, since a call to
//! `_exit` from this library would come back here.

use core::ffi::c_int;

/// Ends the process with `status`, after the exit-time reports (`tallymalloc.h`).
#[no_mangle]
pub extern "C" fn _exit(status: c_int) -> ! {
    tallymalloc_core::report_at_quick_exit();
    loop {
        // SAFETY: exit_group takes a plain status and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

/// The same as [`_exit`] (C99's name for it).
#[no_mangle]
pub extern "C" fn _Exit(status: c_int) -> ! {
    _exit(status)
}
