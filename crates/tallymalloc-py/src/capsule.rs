//! The C API other extensions reach through a `PyCapsule`, as NumPy's is reached: Cython code
//! does `cimport tallymalloc` (the package's `__init__.pxd`), C code includes
//! `tallymalloc_api.h` from `tallymalloc.get_include()`. Both import the capsule
//! `tallymalloc._native._C_API` and call through this table.
//!
//! Invariants:
//! - **C1 layout**: the table's layout is `TallymallocApi` in `tallymalloc_api.h`, field for
//!   field; fields are only ever appended, and `version` counts the additions.
//! - The table lives as long as the capsule, which the module keeps for the process's life.

use crate::library::Library;
use core::ffi::{c_char, c_int, c_uint, c_void};

/// `TALLYMALLOC_API_VERSION` in the header.
pub const VERSION: c_uint = 1;

/// The function table (C1).
#[repr(C)]
pub struct Api {
    version: c_uint,
    malloc: unsafe extern "C" fn(c_int, usize) -> *mut c_void,
    calloc: unsafe extern "C" fn(c_int, usize, usize) -> *mut c_void,
    realloc: unsafe extern "C" fn(c_int, *mut c_void, usize) -> *mut c_void,
    free: unsafe extern "C" fn(c_int, *mut c_void),
    usable_size: unsafe extern "C" fn(*const c_void) -> usize,
    domain_register: unsafe extern "C" fn(*const c_char) -> c_int,
    domain_name: unsafe extern "C" fn(c_int) -> *const c_char,
    domain_stats: unsafe extern "C" fn(c_int, *mut c_void) -> c_int,
    stats_json: unsafe extern "C" fn(*mut c_char, usize) -> usize,
}

impl Api {
    /// The table for the loaded library.
    pub fn of(library: &Library) -> Api {
        Api {
            version: VERSION,
            malloc: library.malloc,
            calloc: library.calloc,
            realloc: library.realloc,
            free: library.free,
            usable_size: library.usable_size,
            domain_register: library.domain_register,
            domain_name: library.domain_name,
            domain_stats: library.domain_stats,
            stats_json: library.stats_json,
        }
    }
}
