//! The second part of the bench: instructions per malloc+free pair and per cross-thread free,
//! counted with callgrind for every allocator the same way (a C loop calling malloc and free
//! through the dynamic linker), net of the loop's own instructions. Unlike timings, these
//! counts repeat exactly on a noisy machine.

use crate::allocators::Allocator;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub const SIZES: &[usize] = &[16, 64, 1024, 16384];

/// Instructions executed inside `function` (and what it calls) by one run of `program`.
fn count(
    function: &str,
    program: &Path,
    arguments: &[String],
    library: Option<&Path>,
) -> Result<f64, String> {
    let out = std::env::temp_dir().join(format!(
        "tallymalloc-bench-callgrind-{}",
        std::process::id()
    ));
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect={function}"))
        .arg(program)
        .args(arguments);
    if let Some(library) = library {
        command.env("LD_PRELOAD", library);
    }
    let result = command
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "valgrind {}: {}",
            program.display(),
            String::from_utf8_lossy(&result.stderr)
        ));
    }
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
    let library = allocator.library.as_deref();
    let mut arguments = vec![size.to_string(), operations.to_string()];
    let total = count(function, program, &arguments, library)?;
    arguments.push("harness".into());
    let harness = count(harness_function, program, &arguments, library)?;
    Ok((total - harness) / operations as f64)
}

/// Counts for every allocator; returns the JSON and prints the table.
pub fn measure(allocators: &[Allocator], programs: &Path, pairs: u64) -> Result<Value, String> {
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

/// Compiles the two callgrind probes into `directory`.
pub fn build(directory: &Path) -> Result<(), String> {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    for name in ["fastpath", "remote_free"] {
        let status = Command::new("cc")
            .args(["-O2", "-g", "-o"])
            .arg(directory.join(name))
            .arg(sources.join(format!("{name}.c")))
            .arg("-lpthread")
            .status()
            .map_err(|e| format!("cannot run cc: {e}"))?;
        if !status.success() {
            return Err(format!("compiling {name}.c failed"));
        }
    }
    Ok(())
}
