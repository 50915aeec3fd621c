//! The bench command runs in quick mode and writes well-formed JSON (the figures themselves
//! are not checked: they belong to the machine). Needs libtallymalloc.so built beside the
//! bench binary (scripts/test builds the whole workspace first).

use serde_json::Value;
use std::process::Command;

#[test]
fn quick_mode_writes_well_formed_json() {
    let json = std::env::temp_dir().join(format!("tallymalloc-bench-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_tallymalloc-bench"))
        .args([
            "--quick",
            "--reps",
            "1",
            "--allocators",
            "system,tallymalloc",
        ])
        .args(["--operations", "2000", "--json"])
        .arg(&json)
        .output()
        .expect("run tallymalloc-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("tallymalloc / peer, geometric mean"),
        "{stdout}"
    );
    assert!(stdout.contains("instructions per operation"), "{stdout}");

    let document: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    assert_eq!(document["version"], 1);
    assert_eq!(document["quick"], true);
    assert_eq!(
        document["allocators"],
        serde_json::json!(["system", "tallymalloc"])
    );
    let workloads = document["workloads"].as_array().expect("workloads");
    assert_eq!(workloads.len(), 21);
    for workload in workloads {
        assert!(workload["name"].is_string());
        for allocator in ["system", "tallymalloc"] {
            let result = &workload["results"][allocator];
            assert!(
                result["median_seconds"].as_f64().unwrap() > 0.0,
                "{workload}"
            );
            assert!(
                result["median_peak_rss_bytes"].as_f64().unwrap() > 0.0,
                "{workload}"
            );
            assert_eq!(result["runs"].as_array().unwrap().len(), 1);
        }
    }
    let versus = &document["tallymalloc_vs"]["system"];
    assert!(versus["time"].as_f64().unwrap() > 0.0);
    assert!(versus["peak_rss"].as_f64().unwrap() > 0.0);
    let counts = document["instructions"]["per_operation"]
        .as_object()
        .expect("instructions");
    assert_eq!(counts.len(), 5);
    for row in counts.values() {
        assert!(row["tallymalloc"].as_f64().unwrap() > 0.0);
        assert!(row["system"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_arguments_get_a_clear_answer() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tallymalloc-bench"))
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["--workloads", "nonsense"]);
    assert!(
        !ok && stderr.contains("unknown workload \"nonsense\" (known: bignum"),
        "{stderr}"
    );
    let (ok, stderr) = run(&["--allocators", "hoard", "--no-instructions"]);
    assert!(
        !ok && stderr.contains("unknown allocator \"hoard\""),
        "{stderr}"
    );
    let (ok, stderr) = run(&["--reps", "0"]);
    assert!(
        !ok && stderr.contains("--reps and --threads must be at least 1"),
        "{stderr}"
    );
    let (ok, _) = run(&["--no-such-flag"]);
    assert!(!ok);
}

#[test]
fn workload_instruction_counts_compare_allocators() {
    let output = Command::new(env!("CARGO_BIN_EXE_tallymalloc-bench"))
        .args(["--count-workloads", "--workloads", "glibc-simple,bignum"])
        .args(["--allocators", "tallymalloc,system"])
        .output()
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for workload in ["glibc-simple", "bignum"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(workload))
            .expect(&stdout);
        let counts: Vec<f64> = row
            .split_whitespace()
            .skip(1)
            .map(|count| count.parse().unwrap())
            .collect();
        assert!(
            counts.len() == 2 && counts.iter().all(|&c| c > 1.0),
            "{row}"
        );
    }
    // glibc's malloc costs more instructions than ours on its own micro-benchmark.
    let ratio: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("  tallymalloc / system: "))
        .and_then(|rest| rest.split('x').next()?.parse().ok())
        .expect(&stdout);
    assert!(ratio > 0.0 && ratio < 1.0, "{stdout}");
}
