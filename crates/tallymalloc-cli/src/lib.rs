//! The `tallymalloc` command's pieces: finding the library, running a program on it, reading the
//! stats document it writes, and reporting it as text or HTML; comparing allocators on a
//! program. `main.rs` holds only the command line.

pub mod compare;
pub mod document;
pub mod environment;
pub mod flame;
pub mod html_report;
pub mod library;
pub mod pprof;
pub mod processes;
pub mod profile;
pub mod run;
pub mod schema;
pub mod symbols;
pub mod text_report;
