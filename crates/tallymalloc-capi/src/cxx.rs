//! C++'s `operator new` and `operator delete`, all forms (plain, array, nothrow, sized,
//! aligned), exported under their Itanium-mangled names so C++ programs are served directly.
//!
//! `operator new` must call the `new_handler` and throw `std::bad_alloc` when it cannot
//! allocate. A C++ exception may not unwind through Rust code built with `panic = "abort"`, so
//! the throwing forms are naked functions that jump to C helpers (`new_delete.c`): no Rust
//! frame is on the stack when the exception is thrown, and it unwinds straight to the caller.
//! The nothrow forms return null on failure without consulting the `new_handler` (a handler
//! may throw, and C cannot catch), as mimalloc's C build does; `delete` never throws. Both are
//! ordinary Rust functions.

use crate::contract;
use core::ffi::c_void;

extern "C" {
    fn tm_cxx_new(size: usize) -> *mut c_void;
    fn tm_cxx_new_aligned(size: usize, alignment: usize) -> *mut c_void;
}

/// Exports a naked function that jumps to a C++ helper taking the same arguments in the same
/// registers (the size, then the alignment).
macro_rules! jump_to_cxx {
    ($export:literal, $name:ident, $target:ident) => {
        #[unsafe(naked)]
        #[export_name = $export]
        /// # Safety
        /// Called by C++ code as the corresponding `operator new`.
        pub unsafe extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {}", sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {}", sym $target);
        }
    };
}

jump_to_cxx!("_Znwm", operator_new, tm_cxx_new);
jump_to_cxx!("_Znam", operator_new_array, tm_cxx_new);
jump_to_cxx!(
    "_ZnwmSt11align_val_t",
    operator_new_aligned,
    tm_cxx_new_aligned
);
jump_to_cxx!(
    "_ZnamSt11align_val_t",
    operator_new_array_aligned,
    tm_cxx_new_aligned
);

/// `operator new(size_t, const nothrow_t&)` and the array form.
#[export_name = "_ZnwmRKSt9nothrow_t"]
pub extern "C" fn operator_new_nothrow(size: usize, _tag: *const c_void) -> *mut c_void {
    contract::malloc(size)
}

#[export_name = "_ZnamRKSt9nothrow_t"]
pub extern "C" fn operator_new_array_nothrow(size: usize, _tag: *const c_void) -> *mut c_void {
    contract::malloc(size)
}

#[export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_new_aligned_nothrow(
    size: usize,
    alignment: usize,
    _tag: *const c_void,
) -> *mut c_void {
    contract::aligned_alloc(alignment, size)
}

#[export_name = "_ZnamSt11align_val_tRKSt9nothrow_t"]
pub extern "C" fn operator_new_array_aligned_nothrow(
    size: usize,
    alignment: usize,
    _tag: *const c_void,
) -> *mut c_void {
    contract::aligned_alloc(alignment, size)
}

/// Exports `operator delete` forms; every one frees the block (sizes and alignments are
/// known to the allocator already).
macro_rules! delete {
    ($($export:literal => $name:ident($($extra:ident: $type:ty),*);)*) => {$(
        /// # Safety
        /// `block` must be null or a live block from `operator new`.
        #[export_name = $export]
        pub unsafe extern "C" fn $name(block: *mut c_void $(, $extra: $type)*) {
            // SAFETY: the caller's contract; `contract::free` rejects pointers not ours.
            unsafe { contract::free(block) }
        }
    )*};
}

delete! {
    "_ZdlPv" => operator_delete();
    "_ZdaPv" => operator_delete_array();
    "_ZdlPvm" => operator_delete_sized(_size: usize);
    "_ZdaPvm" => operator_delete_array_sized(_size: usize);
    "_ZdlPvRKSt9nothrow_t" => operator_delete_nothrow(_tag: *const c_void);
    "_ZdaPvRKSt9nothrow_t" => operator_delete_array_nothrow(_tag: *const c_void);
    "_ZdlPvSt11align_val_t" => operator_delete_aligned(_alignment: usize);
    "_ZdaPvSt11align_val_t" => operator_delete_array_aligned(_alignment: usize);
    "_ZdlPvmSt11align_val_t" => operator_delete_sized_aligned(_size: usize, _alignment: usize);
    "_ZdaPvmSt11align_val_t" => operator_delete_array_sized_aligned(_size: usize, _alignment: usize);
    "_ZdlPvSt11align_val_tRKSt9nothrow_t" =>
        operator_delete_aligned_nothrow(_alignment: usize, _tag: *const c_void);
    "_ZdaPvSt11align_val_tRKSt9nothrow_t" =>
        operator_delete_array_aligned_nothrow(_alignment: usize, _tag: *const c_void);
}
