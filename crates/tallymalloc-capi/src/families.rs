//! The domain API of `include/tallymalloc.h`: registering allocator families by name and
//! allocating, resizing and freeing through them. The C rules are those of `contract.rs` plus
//! one: a domain id that is not registered gets NULL with errno EINVAL (allocation) or one
//! stderr line (free, which then frees the block through its own family).

use crate::contract::{self, or_null};
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use tallymalloc_core::{self as core_allocator, Domain, DomainError};

/// The registered domain `id`, or `None` with errno EINVAL.
fn domain(id: c_int) -> Option<Domain> {
    let found = usize::try_from(id).ok().and_then(Domain::from_id);
    if found.is_none() {
        core_allocator::set_errno(libc::EINVAL);
    }
    found
}

/// Registers `name` (or finds it): its id, or -1 with errno EINVAL (bad name) or ENOSPC (no
/// id left).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_register(name: *const c_char) -> c_int {
    if name.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    let result = core::str::from_utf8(bytes)
        .map_err(|_| DomainError::BadName)
        .and_then(Domain::register);
    match result {
        Ok(domain) => domain.id() as c_int,
        Err(DomainError::BadName) => {
            core_allocator::set_errno(libc::EINVAL);
            -1
        }
        Err(DomainError::TableFull) => {
            core_allocator::set_errno(libc::ENOSPC);
            -1
        }
    }
}

/// The name of domain `id`, or NULL (errno EINVAL) if it is not registered.
#[no_mangle]
pub extern "C" fn tm_domain_name(id: c_int) -> *const c_char {
    match domain(id).and_then(Domain::name_c_str) {
        Some(name) => name.as_ptr(),
        None => ptr::null(),
    }
}

/// The domain of `block`, or -1 (errno EINVAL) for NULL or a pointer that is not ours.
///
/// # Safety
/// `block` must be NULL, not ours, or a live block.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_of(block: *const c_void) -> c_int {
    if !core_allocator::is_ours(block.cast()) {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: ours, and live by the caller's contract.
    unsafe { core_allocator::domain_of(block.cast()) }.id() as c_int
}

#[no_mangle]
pub extern "C" fn tm_domain_malloc(id: c_int, size: usize) -> *mut c_void {
    domain(id).map_or(ptr::null_mut(), |domain| or_null(domain.alloc(size)))
}

#[no_mangle]
pub extern "C" fn tm_domain_calloc(id: c_int, count: usize, size: usize) -> *mut c_void {
    domain(id).map_or(ptr::null_mut(), |domain| {
        or_null(domain.calloc(count, size))
    })
}

#[no_mangle]
pub extern "C" fn tm_domain_aligned_alloc(id: c_int, alignment: usize, size: usize) -> *mut c_void {
    let Some(domain) = domain(id) else {
        return ptr::null_mut();
    };
    if !alignment.is_power_of_two() {
        core_allocator::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    or_null(domain.aligned_alloc(size, alignment))
}

/// # Safety
/// `block` must be NULL, not ours (reported), or a live block.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_realloc(
    id: c_int,
    block: *mut c_void,
    size: usize,
) -> *mut c_void {
    let Some(domain) = domain(id) else {
        return ptr::null_mut();
    };
    if block.is_null() {
        return or_null(domain.alloc(size));
    }
    if !contract::accept(b"tm_domain_realloc", block) {
        core_allocator::set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    if size == 0 {
        // As realloc(p, 0): free through this family (a mismatch is reported there).
        // SAFETY: a live block of ours.
        unsafe { domain.free(block.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: a live block of ours; on failure it is untouched.
    or_null(unsafe { domain.realloc(block.cast(), size) })
}

/// # Safety
/// `block` must be NULL, not ours (reported), or a live block.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_free(id: c_int, block: *mut c_void) {
    let _errno = core_allocator::ErrnoGuard::save();
    if !core_allocator::is_ours(block.cast()) {
        if !block.is_null() {
            core_allocator::report_invalid_pointer(b"tm_domain_free", block as usize);
        }
        return;
    }
    match domain(id) {
        // SAFETY: ours, and live by the caller's contract.
        Some(domain) => unsafe { domain.free(block.cast()) },
        None => {
            core_allocator::report_unknown_domain(b"tm_domain_free", id as i64);
            // SAFETY: ours and live.
            unsafe { core_allocator::free_in_own_domain(block.cast()) };
        }
    }
}

/// Frees `block` and returns 1 when it is a live block of domain `id` (or NULL); returns 0 and
/// leaves it alone when it is another domain's or another allocator's.
///
/// # Safety
/// `block` must be NULL, not ours, or a live block.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_free_if_owned(id: c_int, block: *mut c_void) -> c_int {
    match domain(id) {
        // SAFETY: the caller's contract.
        Some(domain) => c_int::from(unsafe { domain.free_if_owned(block.cast()) }),
        None => 0,
    }
}
