//! Results: medians per workload and allocator, geometric-mean ratios of tallymalloc against
//! each peer, the text table, and the JSON document (`--json`, schema version 1).

use crate::measure::{median, Run};
use serde_json::{json, Value};

pub struct WorkloadResults {
    pub name: String,
    /// Runs by allocator, in the order of `Results::allocators`.
    pub runs: Vec<Vec<Run>>,
    /// Whether the row counts in the geometric means (rows that repeat a workload do not).
    pub in_means: bool,
}

pub struct Results {
    pub allocators: Vec<String>,
    pub workloads: Vec<WorkloadResults>,
    pub reps: usize,
    pub quick: bool,
    pub threads: usize,
}

pub fn geometric_mean(values: &[f64]) -> f64 {
    let logs: Vec<f64> = values
        .iter()
        .filter(|v| **v > 0.0)
        .map(|v| v.ln())
        .collect();
    (logs.iter().sum::<f64>() / logs.len() as f64).exp()
}

impl WorkloadResults {
    fn median_seconds(&self, allocator: usize) -> f64 {
        median(self.runs[allocator].iter().map(|r| r.seconds).collect())
    }
    fn median_rss(&self, allocator: usize) -> f64 {
        median(
            self.runs[allocator]
                .iter()
                .map(|r| r.peak_rss_bytes as f64)
                .collect(),
        )
    }
}

impl Results {
    fn index(&self, name: &str) -> Option<usize> {
        self.allocators.iter().position(|a| a == name)
    }

    /// The peer (`allocators::is_peer`) with the lowest median time on `workload`.
    fn fastest_peer(&self, workload: &WorkloadResults) -> Option<usize> {
        (0..self.allocators.len())
            .filter(|&index| crate::allocators::is_peer(&self.allocators[index]))
            .min_by(|&a, &b| {
                workload
                    .median_seconds(a)
                    .total_cmp(&workload.median_seconds(b))
            })
    }

    /// Tallymalloc's median time over the fastest peer's, on each workload in the means.
    fn against_fastest_peers(&self) -> Vec<(&WorkloadResults, usize, f64)> {
        let Some(tally) = self.index("tallymalloc") else {
            return Vec::new();
        };
        self.workloads
            .iter()
            .filter(|w| w.in_means)
            .filter_map(|w| {
                let fastest = self.fastest_peer(w)?;
                Some((
                    w,
                    fastest,
                    w.median_seconds(tally) / w.median_seconds(fastest),
                ))
            })
            .collect()
    }

    /// Each workload's ratio to its fastest peer, and their geometric mean (null without peers).
    fn versus_fastest_peers_json(&self) -> Value {
        let rows = self.against_fastest_peers();
        if rows.is_empty() {
            return Value::Null;
        }
        let by_workload: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(w, fastest, ratio)| {
                (
                    w.name.clone(),
                    json!({"peer": self.allocators[*fastest], "time": ratio}),
                )
            })
            .collect();
        let ratios: Vec<f64> = rows.iter().map(|(_, _, ratio)| *ratio).collect();
        json!({"geometric_mean": geometric_mean(&ratios), "workloads": by_workload})
    }

    /// Geometric mean over workloads of tallymalloc's median divided by `peer`'s.
    fn ratio(&self, peer: usize, metric: fn(&WorkloadResults, usize) -> f64) -> Option<f64> {
        let tally = self.index("tallymalloc")?;
        let ratios: Vec<f64> = self
            .workloads
            .iter()
            .filter(|w| w.in_means)
            .map(|w| metric(w, tally) / metric(w, peer))
            .collect();
        Some(geometric_mean(&ratios))
    }

    pub fn print(&self) {
        let width = self
            .allocators
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(15);
        println!();
        println!(
            "median wall time in ms and peak RSS in MiB, {} runs each{}, {} threads",
            self.reps,
            if self.quick { ", quick mode" } else { "" },
            self.threads
        );
        print!("{:<16}", "workload");
        for allocator in &self.allocators {
            print!(" {allocator:>width$}");
        }
        println!();
        for workload in &self.workloads {
            let marker = if workload.in_means { "" } else { "*" };
            print!("{:<16}", format!("{}{marker}", workload.name));
            for index in 0..self.allocators.len() {
                let cell = format!(
                    "{:.0} ({:.1})",
                    workload.median_seconds(index) * 1e3,
                    workload.median_rss(index) / (1 << 20) as f64
                );
                print!(" {cell:>width$}");
            }
            println!();
        }
        if let Some(tally) = self.index("tallymalloc") {
            if self.workloads.iter().any(|w| !w.in_means) {
                println!(
                    "(* not in the means: tallymalloc's column runs it with tallymalloc linked in)"
                );
            }
            println!();
            println!("tallymalloc / peer, geometric mean over workloads (below 1.00: tallymalloc is better)");
            for (index, peer) in self.allocators.iter().enumerate() {
                if index == tally {
                    continue;
                }
                let time = self
                    .ratio(index, WorkloadResults::median_seconds)
                    .unwrap_or(f64::NAN);
                let rss = self
                    .ratio(index, WorkloadResults::median_rss)
                    .unwrap_or(f64::NAN);
                let worst = self
                    .workloads
                    .iter()
                    .filter(|w| w.in_means)
                    .map(|w| (w.median_seconds(tally) / w.median_seconds(index), &w.name))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let worst = worst.map_or(String::new(), |(r, n)| format!(", slowest: {n} {r:.2}x"));
                let name_width = width.min(22);
                println!("  vs {peer:<name_width$} time {time:.2}x   peak RSS {rss:.2}x{worst}");
            }
            self.print_against_fastest_peers(tally);
            self.print_mode_cost(tally, "tallymalloc-debug", "debug mode");
            self.print_mode_cost(tally, "tallymalloc-profile", "profiling");
        }
    }

    /// What a mode of the library (a column of its own, such as `tallymalloc-debug`) costs
    /// against the normal one: the geometric mean and the worst workload, in time and in peak
    /// RSS.
    fn print_mode_cost(&self, tally: usize, column: &str, mode: &str) {
        let Some(index) = self.index(column) else {
            return;
        };
        let in_means: Vec<&WorkloadResults> =
            self.workloads.iter().filter(|w| w.in_means).collect();
        let times: Vec<(f64, &str)> = in_means
            .iter()
            .map(|w| {
                (
                    w.median_seconds(index) / w.median_seconds(tally),
                    w.name.as_str(),
                )
            })
            .collect();
        let sizes: Vec<(f64, &str)> = in_means
            .iter()
            .map(|w| (w.median_rss(index) / w.median_rss(tally), w.name.as_str()))
            .collect();
        let summary = |ratios: &[(f64, &str)]| {
            let mean = geometric_mean(&ratios.iter().map(|r| r.0).collect::<Vec<_>>());
            let worst = ratios.iter().max_by(|a, b| a.0.total_cmp(&b.0));
            match worst {
                Some((ratio, name)) => format!("{mean:.2}x (most: {name} {ratio:.2}x)"),
                None => "no workload".into(),
            }
        };
        println!();
        println!(
            "{mode} / normal mode: time {}, peak RSS {}",
            summary(&times),
            summary(&sizes)
        );
    }

    /// A row per workload: its fastest peer, both times, and the ratios to that peer and to the
    /// system allocator; then their geometric mean.
    fn print_against_fastest_peers(&self, tally: usize) {
        let rows = self.against_fastest_peers();
        if rows.is_empty() {
            return;
        }
        let system = self.index("system");
        println!();
        println!("tallymalloc / the fastest peer on each workload (median time; below 1.00: tallymalloc is faster)");
        println!(
            "{:<16} {:>14} {:>10} {:>14} {:>8} {:>10}",
            "workload", "fastest peer", "its ms", "tallymalloc ms", "ratio", "vs system"
        );
        for (workload, fastest, ratio) in &rows {
            let versus_system = system.map_or(String::from("-"), |system| {
                let ratio = workload.median_seconds(tally) / workload.median_seconds(system);
                format!("{ratio:.2}x")
            });
            println!(
                "{:<16} {:>14} {:>10.0} {:>14.0} {:>7.2}x {:>10}",
                workload.name,
                self.allocators[*fastest],
                workload.median_seconds(*fastest) * 1e3,
                workload.median_seconds(tally) * 1e3,
                ratio,
                versus_system
            );
        }
        let ratios: Vec<f64> = rows.iter().map(|(_, _, ratio)| *ratio).collect();
        println!(
            "geometric mean against the fastest peer per workload: {:.2}x",
            geometric_mean(&ratios)
        );
    }

    pub fn to_json(&self, instructions: Option<&Value>) -> Value {
        let workloads: Vec<Value> = self
            .workloads
            .iter()
            .map(|w| {
                let mut by_allocator = serde_json::Map::new();
                for (index, allocator) in self.allocators.iter().enumerate() {
                    let runs: Vec<Value> = w.runs[index]
                        .iter()
                        .map(|r| json!({"seconds": r.seconds, "peak_rss_bytes": r.peak_rss_bytes}))
                        .collect();
                    by_allocator.insert(
                        allocator.clone(),
                        json!({
                            "median_seconds": w.median_seconds(index),
                            "median_peak_rss_bytes": w.median_rss(index),
                            "runs": runs,
                        }),
                    );
                }
                let fastest_peer = self.fastest_peer(w).map(|i| self.allocators[i].clone());
                json!({
                    "name": w.name,
                    "in_means": w.in_means,
                    "results": by_allocator,
                    "fastest_peer": fastest_peer,
                })
            })
            .collect();
        let mut ratios = serde_json::Map::new();
        if let Some(tally) = self.index("tallymalloc") {
            for (index, peer) in self.allocators.iter().enumerate() {
                if index != tally {
                    ratios.insert(
                        peer.clone(),
                        json!({
                            "time": self.ratio(index, WorkloadResults::median_seconds),
                            "peak_rss": self.ratio(index, WorkloadResults::median_rss),
                        }),
                    );
                }
            }
        }
        json!({
            "version": 1,
            "quick": self.quick,
            "reps": self.reps,
            "threads": self.threads,
            "allocators": self.allocators,
            "workloads": workloads,
            "tallymalloc_vs": ratios,
            "tallymalloc_vs_fastest_peers": self.versus_fastest_peers_json(),
            "instructions": instructions.cloned().unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_geometric_mean() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        assert!((geometric_mean(&[2.0, 0.5]) - 1.0).abs() < 1e-12);
        assert!((geometric_mean(&[4.0, 1.0]) - 2.0).abs() < 1e-12);
    }

    fn run(seconds: f64) -> Run {
        Run {
            seconds,
            cpu_seconds: seconds,
            peak_rss_bytes: 1 << 20,
            output: String::new(),
        }
    }

    /// The fastest peer is the fastest of the peers only: never the system allocator or a
    /// build of tallymalloc, however fast they are.
    #[test]
    fn the_fastest_peer_is_chosen_among_peers_per_workload() {
        let allocators = [
            "system",
            "tallymalloc",
            "mimalloc3",
            "snmalloc",
            "tallymalloc-secure",
        ];
        let workload = |name: &str, times: [f64; 5]| WorkloadResults {
            name: name.into(),
            runs: times.iter().map(|&t| vec![run(t)]).collect(),
            in_means: true,
        };
        let results = Results {
            allocators: allocators.iter().map(|a| a.to_string()).collect(),
            workloads: vec![
                workload("a", [0.1, 1.0, 2.0, 4.0, 0.1]),
                workload("b", [0.1, 1.0, 4.0, 0.5, 0.1]),
            ],
            reps: 1,
            quick: true,
            threads: 2,
        };
        let rows = results.against_fastest_peers();
        let named: Vec<(&str, &str, f64)> = rows
            .iter()
            .map(|(w, peer, ratio)| (w.name.as_str(), allocators[*peer], *ratio))
            .collect();
        assert_eq!(named, [("a", "mimalloc3", 0.5), ("b", "snmalloc", 2.0)]);
        let json = results.to_json(None);
        assert_eq!(json["workloads"][1]["fastest_peer"], "snmalloc");
        assert_eq!(json["tallymalloc_vs_fastest_peers"]["geometric_mean"], 1.0);
    }
}
