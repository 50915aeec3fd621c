//! The profiling API of `include/tallymalloc.h`: starting and stopping sampled heap profiles
//! from the program, their rate, and writing the profile out.

use core::ffi::{c_char, c_int, CStr};
use tallymalloc_core as core_allocator;

/// Starts sampling, as `TALLYMALLOC_PROFILE=1` does. Returns 0, or -1 with errno EBUSY in
/// debug mode, which excludes profiling.
#[no_mangle]
pub extern "C" fn tm_profile_enable() -> c_int {
    if core_allocator::profile_enable() {
        0
    } else {
        core_allocator::set_errno(libc::EBUSY);
        -1
    }
}

/// Stops sampling; the profile so far stays.
#[no_mangle]
pub extern "C" fn tm_profile_disable() {
    core_allocator::profile_disable();
}

/// Sets the mean bytes between samples (1 to 2^40). Returns 0, or -1 with errno EINVAL.
#[no_mangle]
pub extern "C" fn tm_profile_set_sample_bytes(bytes: usize) -> c_int {
    if core_allocator::profile_set_sample_bytes(bytes) {
        0
    } else {
        core_allocator::set_errno(libc::EINVAL);
        -1
    }
}

/// Writes the profile as it stands to `path` (created or truncated), in the format
/// `tallymalloc run` reads. Returns 0, or -1 with errno set (EINVAL for a null path, or what
/// open(2) said).
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_profile_write(path: *const c_char) -> c_int {
    if path.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract.
    let path = unsafe { CStr::from_ptr(path) };
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return -1;
    }
    core_allocator::profile_write_to_fd(fd);
    // SAFETY: we opened `fd` above.
    unsafe { libc::close(fd) };
    0
}

/// Registers the function that writes the calling thread's Python frames on each sample, or
/// none (`include/tallymalloc.h` states what it must and must not do).
#[no_mangle]
pub extern "C" fn tm_profile_set_python_frames(source: Option<core_allocator::PythonFrameSource>) {
    core_allocator::profile_set_python_frames(source);
}

/// Names a Python code object for the profile written at exit. Returns 0, or -1 with errno
/// EINVAL (a null name or a zero code) or ENOMEM (the table is full).
///
/// # Safety
/// `function` and `file` must be null or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn tm_profile_name_python_code(
    code: usize,
    function: *const c_char,
    file: *const c_char,
) -> c_int {
    if code == 0 || function.is_null() || file.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract.
    let (function, file) = unsafe { (CStr::from_ptr(function), CStr::from_ptr(file)) };
    if core_allocator::profile_name_python_code(code, function.to_bytes(), file.to_bytes()) {
        0
    } else {
        core_allocator::set_errno(libc::ENOMEM);
        -1
    }
}
