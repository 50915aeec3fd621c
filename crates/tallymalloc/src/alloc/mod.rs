//! The allocator: size classes, pages, segments, the address registry, huge blocks and their
//! cache, the per-thread heaps and their domain heaps, the thread glue, and the Rust faces
//! (`GlobalAlloc`, owned buffers). See `docs/ARCHITECTURE.md` for the path of a `malloc` and a
//! `free` through these modules.

pub(crate) mod aligned;
pub(crate) mod allocate;
pub(crate) mod buffer;
pub(crate) mod domain_heap;
pub(crate) mod free;
pub(crate) mod free_list;
pub(crate) mod global;
pub(crate) mod heap;
pub(crate) mod huge;
pub(crate) mod huge_cache;
pub(crate) mod lookup;
pub(crate) mod page;
pub(crate) mod realloc;
pub(crate) mod registry;
pub(crate) mod segment;
pub(crate) mod size_class;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod thread;
