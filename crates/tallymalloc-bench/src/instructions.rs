//! The second part of the bench: instructions per malloc+free pair and per cross-thread free,
//! counted with callgrind for every allocator the same way (a C loop calling malloc and free
//! through the dynamic linker), net of the loop's own instructions. Unlike timings, these
//! counts repeat exactly on a noisy machine.

use crate::allocators::Allocator;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub const SIZES: &[usize] = &[16, 64, 1024, 16384];

/// Runs `program arguments` under callgrind with `options`, under `allocator`; returns
/// valgrind's log (its stderr), or an error if the run failed.
fn callgrind(
    options: &[String],
    program: &Path,
    arguments: &[String],
    allocator: &Allocator,
) -> Result<String, String> {
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .args(options)
        .arg(program)
        .args(arguments);
    if let Some(library) = &allocator.library {
        command.env("LD_PRELOAD", library);
    }
    command.envs(allocator.environment.iter().copied());
    let result = command
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let log = String::from_utf8_lossy(&result.stderr).into_owned();
    if !result.status.success() {
        return Err(format!("valgrind {}: {log}", program.display()));
    }
    Ok(log)
}

/// Instructions executed inside `function` (and what it calls) by one run of `program`.
fn count(
    function: &str,
    program: &Path,
    arguments: &[String],
    allocator: &Allocator,
) -> Result<f64, String> {
    let out = std::env::temp_dir().join(format!(
        "tallymalloc-bench-callgrind-{}",
        std::process::id()
    ));
    let options = [
        format!("--callgrind-out-file={}", out.display()),
        format!("--toggle-collect={function}"),
    ];
    callgrind(&options, program, arguments, allocator)?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "no totals in callgrind output".to_owned())
}

/// Instructions per operation in `function` of `program SIZE OPERATIONS`, less those of the
/// same loop without the allocator (`harness_function`, run as `program SIZE OPERATIONS
/// harness`).
fn net_per_operation(
    program: &Path,
    function: &str,
    harness_function: &str,
    size: usize,
    operations: u64,
    allocator: &Allocator,
) -> Result<f64, String> {
    let mut arguments = vec![size.to_string(), operations.to_string()];
    let total = count(function, program, &arguments, allocator)?;
    arguments.push("harness".into());
    let harness = count(harness_function, program, &arguments, allocator)?;
    Ok((total - harness) / operations as f64)
}

/// Counts for every allocator; returns the JSON and prints the table.
pub fn measure(allocators: &[&Allocator], programs: &Path, pairs: u64) -> Result<Value, String> {
    let fastpath = programs.join("fastpath");
    let remote = programs.join("remote_free");
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for &size in SIZES {
        let row = allocators
            .iter()
            .map(|a| net_per_operation(&fastpath, "pairs", "harness", size, pairs, a))
            .collect::<Result<_, _>>()?;
        rows.push((format!("malloc+free {size} B"), row));
    }
    let row = allocators
        .iter()
        .map(|a| net_per_operation(&remote, "remote_frees", "remote_harness", 64, pairs, a))
        .collect::<Result<_, _>>()?;
    rows.push(("cross-thread free 64 B".to_owned(), row));

    println!();
    println!("instructions per operation (callgrind, {pairs} operations, net of the loop)");
    print!("{:<24}", "operation");
    for allocator in allocators {
        print!(" {:>12}", allocator.name);
    }
    println!();
    for (name, values) in &rows {
        print!("{name:<24}");
        for value in values {
            print!(" {value:>12.1}");
        }
        println!();
    }
    let mut json_rows = serde_json::Map::new();
    for (name, values) in &rows {
        let by_allocator: serde_json::Map<String, Value> = allocators
            .iter()
            .zip(values)
            .map(|(a, v)| (a.name.to_owned(), json!(v)))
            .collect();
        json_rows.insert(name.clone(), Value::Object(by_allocator));
    }
    Ok(json!({"operations": pairs, "per_operation": json_rows}))
}

/// Whole-program counts run each workload at this fraction of its timed scale.
const WORKLOAD_SCALE_DIVISOR: u64 = 20;

/// Instructions the whole of `program arguments` executes under `allocator` (all threads).
fn count_whole(program: &Path, arguments: &[String], allocator: &Allocator) -> Result<u64, String> {
    let options = ["--callgrind-out-file=/dev/null".to_owned()];
    let log = callgrind(&options, program, arguments, allocator)?;
    log.lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| format!("no instruction total from valgrind: {log}"))
}

/// Counts every workload's instructions, whole program, under each allocator: a repeatable
/// stand-in for the timings when two builds differ by a few percent (the machine's noise).
/// Prints the table and the geometric mean of each allocator against the first.
pub fn measure_workloads(
    allocators: &[&Allocator],
    workloads: &[(&crate::workloads::Workload, &Path)],
    threads: usize,
) -> Result<(), String> {
    println!();
    println!(
        "whole-program instructions in millions (callgrind, 1/{WORKLOAD_SCALE_DIVISOR} of the timed scale, {threads} threads)"
    );
    print!("{:<16}", "workload");
    for allocator in allocators {
        print!(" {:>15}", allocator.name);
    }
    println!();
    let mut log_ratios = vec![0f64; allocators.len()];
    for (workload, program) in workloads {
        let mut arguments = workload.arguments(false, threads);
        arguments[0] = (workload.scale / WORKLOAD_SCALE_DIVISOR).max(1).to_string();
        eprint!("\r\x1b[Kcounting {:<14}", workload.name);
        let counts = allocators
            .iter()
            .map(|a| count_whole(program, &arguments, a))
            .collect::<Result<Vec<_>, _>>()?;
        eprint!("\r\x1b[K");
        print!("{:<16}", workload.name);
        for (index, &count) in counts.iter().enumerate() {
            print!(" {:>15.1}", count as f64 / 1e6);
            log_ratios[index] += (counts[0] as f64 / count as f64).ln();
        }
        println!();
    }
    let first = allocators[0].name;
    for (index, allocator) in allocators.iter().enumerate().skip(1) {
        let ratio = (log_ratios[index] / workloads.len() as f64).exp();
        println!(
            "  {first} / {}: {ratio:.3}x instructions (geometric mean)",
            allocator.name
        );
    }
    Ok(())
}

/// Compiles the two callgrind probes into `directory`.
pub fn build(directory: &Path) -> Result<(), String> {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    for name in ["fastpath", "remote_free"] {
        crate::workloads::compile_c(&sources.join(format!("{name}.c")), &directory.join(name))?;
    }
    Ok(())
}
