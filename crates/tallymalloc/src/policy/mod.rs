//! What the allocator is told to do: the `TALLYMALLOC_*` options, the domains and what a
//! family mismatch does, how misuse is reported, and secure mode.

pub(crate) mod domain;
pub(crate) mod misuse;
pub(crate) mod options;
pub(crate) mod secure;
