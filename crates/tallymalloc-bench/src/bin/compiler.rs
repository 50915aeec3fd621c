//! The compiler-like workload on the system allocator (swappable with LD_PRELOAD).
#[path = "../compiler_workload.rs"]
mod compiler_workload;

fn main() {
    compiler_workload::main_with_arguments();
}
