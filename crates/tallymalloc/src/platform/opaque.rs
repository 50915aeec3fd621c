//! A value the optimizer cannot see through, at no cost: for the cold calls that the fast
//! paths make in tail position.
//!
//! When the compiler can prove that a cold function returns one of its arguments (or null),
//! it uses that value after the call instead of the call's result, so the value must survive
//! the call in a callee-saved register, and the fast path's entry saves and restores that
//! register on every call, taken or not. Passing the result through [`opaque`] hides what it
//! is, and the call becomes a jump.
//!
//! [`unlikely`] does the same for block placement: a call to an empty cold function marks the
//! path that makes it as the one to lay out of line.

/// `value`, through an empty `asm` that might have changed it.
#[inline(always)]
pub fn opaque<T>(mut value: *mut T) -> *mut T {
    // The pointer is never followed, so `nomem` holds.
    #[allow(clippy::pointers_in_nomem_asm_block)]
    // SAFETY: the asm is empty: it reads and writes no memory and changes no register.
    unsafe {
        core::arch::asm!("/* {0} */", inout(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Marks the path that calls it as unlikely (an empty cold function: the stable spelling of
/// `core::hint::cold_path`).
#[cold]
#[inline(always)]
pub fn unlikely() {}
