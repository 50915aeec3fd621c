//! Process trees: a program that starts others (a shell script, `make -j`, a multiprocessing
//! pool, a forking server) has every process that loads the library write its own stats and
//! profile, named by its pid (`stats-%p.json`, `profile-%p.txt`, `leaks-%p.json`). This module
//! reads them back, orders them as a tree (each process under the one that started it) and
//! totals them.

use crate::document::StatsDocument;
use crate::profile::RawProfile;
use crate::text_report::{bytes, count};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One process's reports.
pub struct ProcessReport {
    pub pid: u32,
    /// The stats JSON as the process wrote it.
    pub json: String,
    pub document: StatsDocument,
    /// With profiling: its raw profile, or why there is none.
    pub profile: Option<Result<RawProfile, String>>,
    /// In debug mode: its leak report (JSON), if it wrote one.
    pub leaks: Option<String>,
    /// How far below the program it sits in the tree (the program, and any process whose
    /// parent did not load the library, at 0).
    pub depth: usize,
}

impl ProcessReport {
    pub fn parent_pid(&self) -> u32 {
        self.document.process.parent_pid as u32
    }

    /// The most the process's domains held at once, as far as its figures tell: the highest
    /// total of its timeline's samples, or its largest domain's peak if that is higher (each a
    /// lower bound on the truth).
    pub fn peak_live_bytes(&self) -> u64 {
        let sampled = self
            .document
            .timeline
            .iter()
            .map(|sample| sample.live_bytes.values().sum::<u64>())
            .max()
            .unwrap_or(0);
        let largest_domain = self
            .document
            .domains
            .values()
            .map(|domain| domain.peak_bytes)
            .max()
            .unwrap_or(0);
        sampled.max(largest_domain)
    }

    pub fn allocations(&self) -> u64 {
        self.document.domains.values().map(|d| d.allocations).sum()
    }
}

/// Every process's reports in `directory`, in tree order: the program's (`program`, its pid)
/// first, or, if it wrote none (a static wrapper ignores `LD_PRELOAD`), the one that held the
/// most. Stats files that do not parse are left out and said in the second list.
pub fn read_all(
    directory: &Path,
    program: u32,
    profile: bool,
    debug: bool,
) -> (Vec<ProcessReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    let entries = std::fs::read_dir(directory).into_iter().flatten().flatten();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("stats-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let parsed = std::fs::read_to_string(entry.path())
            .map_err(|e| e.to_string())
            .and_then(|json| StatsDocument::parse(&json).map(|document| (json, document)));
        let (json, document) = match parsed {
            Ok(parsed) => parsed,
            Err(why) => {
                problems.push(format!("process {pid}: {why}"));
                continue;
            }
        };
        let profile = profile.then(|| read_profile(directory, pid));
        let leaks = debug
            .then(|| std::fs::read_to_string(directory.join(format!("leaks-{pid}.json"))).ok())
            .flatten();
        reports.push(ProcessReport {
            pid,
            json,
            document,
            profile,
            leaks,
            depth: 0,
        });
    }
    (in_tree_order(reports, program), problems)
}

/// The processes of a saved `tallymalloc run --json` document (its `processes`), in tree
/// order; empty if it has none. Entries that are not stats documents are left out.
pub fn from_saved(document: &serde_json::Value) -> Vec<ProcessReport> {
    let program = document["process"]["pid"].as_u64().unwrap_or(0) as u32;
    let reports = document["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let json = entry.to_string();
            let document = StatsDocument::parse(&json).ok()?;
            Some(ProcessReport {
                pid: document.process.pid as u32,
                json,
                document,
                profile: None,
                leaks: None,
                depth: 0,
            })
        })
        .collect();
    in_tree_order(reports, program)
}

fn read_profile(directory: &Path, pid: u32) -> Result<RawProfile, String> {
    let text = std::fs::read_to_string(directory.join(format!("profile-{pid}.txt")))
        .map_err(|_| "the process wrote no profile".to_owned())?;
    RawProfile::parse(&text)
}

/// `reports` depth first, each process under its parent and siblings by pid; the program (or
/// the biggest process, without the program's) first, then processes whose parent is not
/// among them.
fn in_tree_order(reports: Vec<ProcessReport>, program: u32) -> Vec<ProcessReport> {
    let first = if reports.iter().any(|r| r.pid == program) {
        Some(program)
    } else {
        reports
            .iter()
            .max_by_key(|r| r.peak_live_bytes())
            .map(|r| r.pid)
    };
    let mut by_pid: BTreeMap<u32, ProcessReport> =
        reports.into_iter().map(|r| (r.pid, r)).collect();
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut roots = Vec::new();
    for report in by_pid.values() {
        let parent = report.parent_pid();
        if by_pid.contains_key(&parent) && Some(report.pid) != first {
            children.entry(parent).or_default().push(report.pid);
        } else if Some(report.pid) != first {
            roots.push(report.pid);
        }
    }
    roots.splice(0..0, first);
    let mut ordered = Vec::with_capacity(by_pid.len());
    let mut stack: Vec<(u32, usize)> = roots.iter().rev().map(|&pid| (pid, 0)).collect();
    while let Some((pid, depth)) = stack.pop() {
        let Some(mut report) = by_pid.remove(&pid) else {
            continue;
        };
        report.depth = depth;
        ordered.push(report);
        for &child in children.get(&pid).into_iter().flatten().rev() {
            stack.push((child, depth + 1));
        }
    }
    // A cycle of parents (pids reused) leaves some unvisited: they go last, at the top level.
    ordered.extend(by_pid.into_values());
    ordered
}

/// Rows the table shows; the rest are summed in one line (and are all in `--json`).
const TABLE_ROWS: usize = 40;

/// The report's table of processes: a row each (pid, parent, peak live, peak resident,
/// allocations, command indented by depth) and their total.
pub fn render_table(reports: &[ProcessReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nprocesses: {} (the program and {} it started that loaded tallymalloc)",
        reports.len(),
        reports.len().saturating_sub(1)
    );
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:>11} {:>14} {:>13}  command",
        "pid", "parent", "peak live", "peak resident", "allocations"
    );
    for report in reports.iter().take(TABLE_ROWS) {
        let command = if report.document.command.is_empty() {
            "?"
        } else {
            report.document.command.as_str()
        };
        let _ = writeln!(
            out,
            "{:>8} {:>8} {:>11} {:>14} {:>13}  {}{}",
            report.pid,
            report.parent_pid(),
            bytes(report.peak_live_bytes()),
            bytes(report.document.peak_resident_bytes()),
            count(report.allocations()),
            "  ".repeat(report.depth),
            shortened(command, 60)
        );
    }
    if reports.len() > TABLE_ROWS {
        let _ = writeln!(
            out,
            "{:>8} more processes (all are in --json)",
            reports.len() - TABLE_ROWS
        );
    }
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:>11} {:>14} {:>13}  (each process at its own peak)",
        "total",
        "",
        bytes(reports.iter().map(ProcessReport::peak_live_bytes).sum()),
        bytes(
            reports
                .iter()
                .map(|r| r.document.peak_resident_bytes())
                .sum()
        ),
        count(reports.iter().map(ProcessReport::allocations).sum()),
    );
    out
}

/// `text` cut to `width` characters, with an ellipsis if cut.
fn shortened(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pid: u32, parent: u32, peak: u64) -> ProcessReport {
        let mut document = serde_json::to_value(tallymalloc::stats()).unwrap();
        for figures in document["domains"].as_object_mut().unwrap().values_mut() {
            figures["peak_bytes"] = 0.into();
        }
        document["process"]["pid"] = pid.into();
        document["process"]["parent_pid"] = parent.into();
        document["domains"]["raw"]["peak_bytes"] = peak.into();
        document["command"] = format!("program {pid}").into();
        document["timeline"] = serde_json::json!([]);
        let json = document.to_string();
        ProcessReport {
            pid,
            document: StatsDocument::parse(&json).unwrap(),
            json,
            profile: None,
            leaks: None,
            depth: 0,
        }
    }

    fn order(reports: Vec<ProcessReport>, program: u32) -> Vec<(u32, usize)> {
        in_tree_order(reports, program)
            .iter()
            .map(|r| (r.pid, r.depth))
            .collect()
    }

    #[test]
    fn processes_sit_under_their_parents_depth_first() {
        // 10 started 30 and 20; 20 started 21; 99's parent is not ours; 5 is the shell.
        let reports = vec![
            report(21, 20, 1),
            report(30, 10, 1),
            report(99, 7, 1),
            report(10, 5, 1),
            report(20, 10, 1),
        ];
        assert_eq!(
            order(reports, 10),
            vec![(10, 0), (20, 1), (21, 2), (30, 1), (99, 0)]
        );
    }

    #[test]
    fn without_the_programs_report_the_biggest_process_leads() {
        let reports = vec![report(11, 10, 100), report(12, 10, 5000), report(13, 12, 1)];
        assert_eq!(order(reports, 10), vec![(12, 0), (13, 1), (11, 0)]);
    }

    #[test]
    fn the_table_has_a_row_per_process_and_a_total() {
        let reports = in_tree_order(vec![report(2, 1, 1 << 20), report(3, 2, 3 << 20)], 2);
        let table = render_table(&reports);
        assert!(table.contains("processes: 2"), "{table}");
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.ends_with("program 2") || l.ends_with("program 3"))
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(rows[1].ends_with("  program 3"), "{table}");
        let total = table
            .lines()
            .find(|l| l.trim_start().starts_with("total"))
            .unwrap();
        assert!(total.contains("4.0 MiB"), "{table}");
    }

    #[test]
    fn a_saved_document_gives_its_processes_back_in_tree_order() {
        let parent = report(40, 1, 10);
        let child = report(41, 40, 10);
        let mut document: serde_json::Value = serde_json::from_str(&parent.json).unwrap();
        document["processes"] = serde_json::json!([
            serde_json::from_str::<serde_json::Value>(&child.json).unwrap(),
            serde_json::from_str::<serde_json::Value>(&parent.json).unwrap(),
            {"not": "a stats document"},
        ]);
        let saved: Vec<(u32, usize)> = from_saved(&document)
            .iter()
            .map(|r| (r.pid, r.depth))
            .collect();
        assert_eq!(saved, vec![(40, 0), (41, 1)]);
    }

    #[test]
    fn long_commands_are_cut() {
        assert_eq!(shortened("abc", 5), "abc");
        assert_eq!(shortened("abcdefgh", 5), "abcd…");
    }
}
