//! libtallymalloc: tallymalloc as the C library's allocator.
//!
//! `cargo build --release -p tallymalloc-capi` builds `target/release/libtallymalloc.so` and
//! `libtallymalloc.a`. Linked into a program, or loaded with `LD_PRELOAD`, the library's
//! `malloc`, `free` and friends (and C++'s `operator new`/`delete`) replace the C library's.
//! The C contract each function keeps (errno, NULL, invalid pointers, `realloc(p, 0)`) is
//! documented once, in `include/tallymalloc.h`, and implemented once, in `contract.rs`; this
//! crate holds no allocator logic.
//!
//! Invariants:
//! - nothing here allocates through Rust's allocator or calls back into malloc;
//! - no exported function unwinds into C: the core never panics (and panics abort), and the
//!   throwing `operator new` forms leave no Rust frame on the stack (see `cxx.rs`);
//! - thread-local state uses the initial-exec model (`.cargo/config.toml`), as glibc requires
//!   of a malloc replacement.

mod contract;
mod cxx;
mod debug_api;
mod exports;
mod families;
mod profile_api;
mod python;
mod quick_exit;
mod stats_api;

/// Applies the `TALLYMALLOC_*` options as soon as the library is loaded, before the program's
/// first allocation, so `TALLYMALLOC_VERBOSE=1` reports them even for a program that never
/// allocates.
extern "C" fn initialize() {
    tallymalloc_core::init();
}

#[used]
#[link_section = ".init_array"]
static INITIALIZE: extern "C" fn() = initialize;
