//! The compiler-like workload with tallymalloc as the Rust global allocator.
#[path = "../compiler_workload.rs"]
mod compiler_workload;

#[global_allocator]
static GLOBAL: tallymalloc::TallyMalloc = tallymalloc::TallyMalloc;

fn main() {
    compiler_workload::main_with_arguments();
}
