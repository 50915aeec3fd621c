//! `tallymalloc compare`: a program run under each installed allocator, repeated in shuffled
//! orders (`tallymalloc_bench::order`), with median wall time, CPU time and peak RSS, and ratios
//! against the system allocator.

use crate::text_report::bytes;
use serde_json::{json, Value};
use std::path::Path;
use tallymalloc_bench::allocators::{self, Allocator};
use tallymalloc_bench::measure::median;
use tallymalloc_bench::measure::{self, Run};

pub struct Row {
    pub allocator: String,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// The allocators wanted, those installed; each missing one is named with its package.
pub fn allocators(wanted: &[String], library: &Path) -> Result<Vec<Allocator>, String> {
    allocators::resolve(wanted, library, "tallymalloc compare")
}

/// Runs `program` `reps` times under each allocator, starting each round with the next one.
pub fn measure(
    allocators: &[Allocator],
    program: &Path,
    arguments: &[String],
    reps: usize,
) -> Result<Vec<Row>, String> {
    let mut runs: Vec<Vec<Run>> = allocators.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        for index in tallymalloc_bench::order::run_order(allocators.len(), rep, 0) {
            let allocator = &allocators[index];
            eprint!("\r\x1b[Kround {}/{reps}: {}", rep + 1, allocator.name);
            let run = measure::run(program, arguments, allocator.library.as_deref())
                .map_err(|e| format!("under {}: {e}", allocator.name))?;
            runs[index].push(run);
        }
    }
    eprint!("\r\x1b[K");
    Ok(allocators
        .iter()
        .zip(runs)
        .map(|(allocator, runs)| Row {
            allocator: allocator.name.to_owned(),
            wall_seconds: median(runs.iter().map(|r| r.seconds).collect()),
            cpu_seconds: median(runs.iter().map(|r| r.cpu_seconds).collect()),
            peak_rss_bytes: median(runs.iter().map(|r| r.peak_rss_bytes as f64).collect()) as u64,
        })
        .collect())
}

/// The table, with ratios against the system allocator when it was measured.
pub fn table(rows: &[Row], reps: usize) -> String {
    let system = rows.iter().find(|r| r.allocator == "system");
    let mut out = format!(
        "median of {reps} run{}\n{:<14} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        if reps == 1 { "" } else { "s" },
        "allocator",
        "wall",
        "user+sys",
        "peak RSS",
        "time/sys",
        "RSS/sys"
    );
    for row in rows {
        let ratio = |ours: f64, theirs: f64| {
            if theirs > 0.0 {
                format!("{:.2}x", ours / theirs)
            } else {
                "-".to_owned()
            }
        };
        let (time_ratio, rss_ratio) = match system {
            Some(s) => (
                ratio(row.wall_seconds, s.wall_seconds),
                ratio(row.peak_rss_bytes as f64, s.peak_rss_bytes as f64),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        out.push_str(&format!(
            "{:<14} {:>8.3} s {:>8.3} s {:>10} {:>10} {:>10}\n",
            row.allocator,
            row.wall_seconds,
            row.cpu_seconds,
            bytes(row.peak_rss_bytes),
            time_ratio,
            rss_ratio
        ));
    }
    out
}

pub fn to_json(rows: &[Row], program: &str, arguments: &[String], reps: usize) -> Value {
    json!({
        "program": program,
        "arguments": arguments,
        "reps": reps,
        "allocators": rows.iter().map(|r| json!({
            "name": r.allocator,
            "wall_seconds": r.wall_seconds,
            "cpu_seconds": r.cpu_seconds,
            "peak_rss_bytes": r.peak_rss_bytes,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_against_the_system_allocator() {
        let rows = [
            Row {
                allocator: "system".into(),
                wall_seconds: 2.0,
                cpu_seconds: 2.0,
                peak_rss_bytes: 100,
            },
            Row {
                allocator: "tallymalloc".into(),
                wall_seconds: 1.0,
                cpu_seconds: 1.0,
                peak_rss_bytes: 150,
            },
        ];
        let text = table(&rows, 3);
        let line = text.lines().find(|l| l.starts_with("tallymalloc")).unwrap();
        assert!(line.contains("0.50x") && line.contains("1.50x"), "{line}");
    }
}
