//! `tallymalloc-bench`: the benchmark suite's command (see the library's documentation).

fn main() -> std::process::ExitCode {
    tallymalloc_bench::main_with_arguments(std::env::args_os())
}
