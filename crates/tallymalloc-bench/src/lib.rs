//! The benchmark suite: runs the benchmark workloads under the system allocator, tallymalloc,
//! upstream mimalloc 3 and 2, snmalloc and rpmalloc (built from crates.io's sources) and
//! Debian's mimalloc, jemalloc and tcmalloc (via LD_PRELOAD), repeated in shuffled orders, and
//! prints the median wall time and peak RSS of each, geometric-mean ratios of tallymalloc
//! against each peer and against the fastest peer on each workload, and callgrind instruction
//! counts of the fast paths.
//!
//! ```text
//! scripts/bench [--quick] [--reps N] [--json PATH] [--allocators a,b] [--workloads w,x]
//! ```
//!
//! The library is shared with the `tallymalloc` command (`tallymalloc bench`, and the
//! allocators and measurement that `tallymalloc compare` uses).

pub mod allocators;
mod capture;
mod instructions;
pub mod measure;
pub mod order;
mod python_suite;
mod report;
mod upstream;
mod workloads;

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tallymalloc-bench",
    about = "Compare tallymalloc with the system allocator, mimalloc 3 and 2, snmalloc, rpmalloc, and Debian's mimalloc, jemalloc and tcmalloc"
)]
struct Options {
    /// A reduced run (a quarter of the work, 3 repetitions, fewer callgrind operations).
    #[arg(long)]
    quick: bool,
    /// Runs of each workload under each allocator (default 5, or 3 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Allocators to compare, comma-separated; NAME=PATH adds another library to preload.
    #[arg(long, value_delimiter = ',', default_values_t = allocators::ALL.iter().map(|a| a.to_string()))]
    allocators: Vec<String>,
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Threads for the multi-threaded workloads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Skip the callgrind instruction counts.
    #[arg(long)]
    no_instructions: bool,
    /// Operations counted per callgrind measurement (default 1,000,000, or 100,000 with --quick).
    #[arg(long)]
    operations: Option<u64>,
    /// List the workloads and what each one does, then exit.
    #[arg(long)]
    list: bool,
    /// Count each workload's whole-program instructions under each allocator with callgrind
    /// (at a twentieth of the timed scale) instead of timing them: repeatable where timings
    /// are noisy. The first allocator is compared with each of the others.
    #[arg(long, conflicts_with_all = ["only_instructions", "json"])]
    count_workloads: bool,
    /// Run the Python suite instead: allocation-heavy scripts under CPython's pymalloc,
    /// tallymalloc installed in CPython's domains, and PYTHONMALLOC=malloc with glibc and
    /// mimalloc (needs the package: scripts/build-python).
    #[arg(long, conflicts_with_all = ["only_instructions", "count_workloads", "workloads", "allocators"])]
    python: bool,
    /// The interpreter for --python (default: target/python-venv/bin/python).
    #[arg(long, value_name = "PATH", requires = "python")]
    python_interpreter: Option<PathBuf>,
    /// Count instructions only (no workloads); scripts/fastpath-count uses it.
    #[arg(long, conflicts_with = "no_instructions")]
    only_instructions: bool,
    /// Time stack capture only: a 24-frame stack by tallymalloc's unwinder (tm_backtrace, as
    /// debug mode captures) and by glibc's backtrace, built with and without frame pointers.
    #[arg(long, conflicts_with_all = ["only_instructions", "count_workloads", "python", "json"])]
    capture: bool,
}

/// Runs the suite with command-line `arguments` (the first is the program's name).
pub fn main_with_arguments(arguments: impl IntoIterator<Item = OsString>) -> ExitCode {
    let options = Options::parse_from(arguments);
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tallymalloc-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    if options.list {
        for workload in workloads::WORKLOADS {
            println!("{:<14} {}", workload.name, workload.about);
        }
        return Ok(());
    }
    if options.reps == Some(0) || options.threads == 0 {
        return Err("--reps and --threads must be at least 1".into());
    }
    let reps = options.reps.unwrap_or(if options.quick { 3 } else { 5 });
    let binaries = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no directory for this program")?
        .to_path_buf();
    let selected: Vec<&workloads::Workload> = match &options.workloads {
        None => workloads::WORKLOADS.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                workloads::find(n).ok_or_else(|| {
                    let known: Vec<&str> = workloads::WORKLOADS.iter().map(|w| w.name).collect();
                    format!("unknown workload {n:?} (known: {})", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if options.python {
        let interpreter = match &options.python_interpreter {
            Some(path) => path.clone(),
            None => binaries.join("../python-venv/bin/python"),
        };
        let results = python_suite::run(&python_suite::Request {
            interpreter: &interpreter,
            library: &binaries.join("libtallymalloc.so"),
            build_directory: &binaries.join("bench-workloads"),
            reps,
            quick: options.quick,
        })?;
        check_outputs_agree(&results)?;
        results.print();
        return write_json(options.json.as_deref(), &results, None);
    }
    if options.capture {
        return capture::run(
            &binaries.join("libtallymalloc.so"),
            &binaries.join("bench-workloads"),
            reps,
            options.quick,
        );
    }
    let allocators = allocators::resolve(
        &options.allocators,
        &binaries.join("libtallymalloc.so"),
        "tallymalloc-bench",
    )?;
    if allocators.is_empty() {
        return Err("no allocator to compare".into());
    }
    let build_directory = binaries.join("bench-workloads");
    if options.only_instructions {
        std::fs::create_dir_all(&build_directory).map_err(|e| e.to_string())?;
        instructions::build(&build_directory)?;
        let operations = options.operations.unwrap_or(1_000_000);
        instructions::measure(
            &allocators::countable(&allocators),
            &build_directory,
            operations,
        )?;
        return Ok(());
    }
    let programs = workloads::build(&build_directory, &binaries)?;
    if options.count_workloads {
        // The row tallymalloc runs linked in is not a preloaded library's to count.
        let counted: Vec<_> = selected
            .iter()
            .filter(|w| w.native_tallymalloc.is_none())
            .map(|w| {
                let index = workloads::WORKLOADS.iter().position(|o| o.name == w.name);
                (*w, programs[index.unwrap()].as_path())
            })
            .collect();
        return instructions::measure_workloads(
            &allocators::countable(&allocators),
            &counted,
            options.threads,
        );
    }

    let mut results = report::Results {
        allocators: allocators.iter().map(|a| a.name.to_owned()).collect(),
        workloads: Vec::new(),
        reps,
        quick: options.quick,
        threads: options.threads,
    };
    for workload in &selected {
        results.workloads.push(report::WorkloadResults {
            name: workload.name.to_owned(),
            runs: (0..allocators.len()).map(|_| Vec::new()).collect(),
            in_means: workload.native_tallymalloc.is_none(),
        });
    }
    for rep in 0..reps {
        for (position, workload) in selected.iter().enumerate() {
            let program_index = workloads::WORKLOADS
                .iter()
                .position(|w| w.name == workload.name)
                .unwrap();
            let program = &programs[program_index];
            let arguments = workload.arguments(options.quick, options.threads);
            eprint!("\r\x1b[Krun {}/{reps}: {:<14}", rep + 1, workload.name);
            for index in order::run_order(allocators.len(), rep, position) {
                let allocator = &allocators[index];
                let native = workload
                    .native_tallymalloc
                    .filter(|_| allocator.name == "tallymalloc");
                let run = match native {
                    Some(binary) => measure::run(&binaries.join(binary), &arguments, None),
                    None => {
                        let preload = allocator
                            .library
                            .as_deref()
                            .map(|l| ("LD_PRELOAD", l.as_os_str()));
                        let environment: Vec<(&str, &std::ffi::OsStr)> = preload
                            .into_iter()
                            .chain(
                                allocator
                                    .environment
                                    .iter()
                                    .map(|(k, v)| (*k, std::ffi::OsStr::new(v))),
                            )
                            .collect();
                        measure::run_with_environment(program, &arguments, &environment)
                    }
                }
                .map_err(|e| format!("{} under {}: {e}", workload.name, allocator.name))?;
                results.workloads[position].runs[index].push(run);
            }
        }
    }
    eprintln!("\r\x1b[K");
    check_outputs_agree(&results)?;
    results.print();

    let instructions = if options.no_instructions {
        None
    } else {
        instructions::build(&build_directory)?;
        let operations =
            options
                .operations
                .unwrap_or(if options.quick { 100_000 } else { 1_000_000 });
        Some(instructions::measure(
            &allocators::countable(&allocators),
            &build_directory,
            operations,
        )?)
    };
    write_json(options.json.as_deref(), &results, instructions.as_ref())
}

fn write_json(
    path: Option<&std::path::Path>,
    results: &report::Results,
    instructions: Option<&serde_json::Value>,
) -> Result<(), String> {
    if let Some(path) = path {
        let document = results.to_json(instructions);
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("tallymalloc-bench: wrote {}", path.display());
    }
    Ok(())
}

/// Every allocator must produce the program's same output: a difference is a bug somewhere.
fn check_outputs_agree(results: &report::Results) -> Result<(), String> {
    for workload in &results.workloads {
        let reference = &workload.runs[0][0].output;
        for (index, runs) in workload.runs.iter().enumerate() {
            if let Some(run) = runs.iter().find(|r| &r.output != reference) {
                return Err(format!(
                    "{}: output under {} ({:?}) differs from {} ({reference:?})",
                    workload.name, results.allocators[index], run.output, results.allocators[0]
                ));
            }
        }
    }
    Ok(())
}
