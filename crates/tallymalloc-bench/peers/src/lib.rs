//! Nothing to build: this package only names the allocator sources to fetch.
