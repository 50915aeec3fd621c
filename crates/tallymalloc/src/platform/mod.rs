//! The platform layer: every system call and the primitives built on them, beneath the
//! allocator. Nothing here uses a module above it.
//!
//! - `os`: memory (map, decommit, remap, unmap), the clock, `errno`, a fork without handlers;
//! - `sync`: the spin lock; `lock_registry`: every lock by rank, held across `fork`;
//! - `list`: the one intrusive list;
//! - `text`: numbers, lines on stderr and the abort, without allocating;
//! - `fault`: injected failures of the mapping calls, for tests;
//! - `unwind`: call stacks, captured by cached unwinding rules.

pub(crate) mod fault;
pub(crate) mod list;
pub(crate) mod lock_registry;
pub(crate) mod opaque;
pub(crate) mod os;
pub(crate) mod sync;
pub(crate) mod text;
pub(crate) mod unwind;
