//! Domains and stats seen from C: the figures of a known sequence, mismatch reports in every
//! direction, the exit-time table and JSON, the timeline, and the JSON schema.

mod common;

use common::{command_with, compile, run_ok, run_with_timeout, scratch, source, Linkage};
use serde_json::Value;
use std::path::Path;

fn build(file: &str) -> std::path::PathBuf {
    let stem = file.split('.').next().unwrap();
    let binary = scratch().join(format!("{stem}-stats"));
    compile(&[source(file)], &binary, Some(Linkage::Linked), &[]);
    binary
}

fn json_between_markers(stdout: &str) -> Value {
    let start = stdout.find("JSON-BEGIN\n").expect(stdout) + "JSON-BEGIN\n".len();
    let end = stdout.find("\nJSON-END").expect(stdout);
    serde_json::from_str(&stdout[start..end]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Panics where `json` breaks `docs/stats-schema.json` (the `tallymalloc` command's checker).
fn validate(json: &Value) {
    if let Err(breach) = tallymalloc_cli::schema::check_stats(json) {
        panic!("{breach}");
    }
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let broken = serde_json::json!({"version": 1, "domains": {}, "size_classes": [],
        "huge": {"live_blocks": 0, "live_bytes": 0}, "process": {}, "timeline": []});
    let breach = tallymalloc_cli::schema::check_stats(&broken).unwrap_err();
    assert_eq!(
        breach, "$.domains: raw is missing",
        "a document without raw/mem/obj"
    );
}

#[test]
fn known_sequence_mismatches_and_json_from_c() {
    let binary = build("domains.c");
    let mut command = command_with(Some(Linkage::Linked), &binary);
    command.env("TALLYMALLOC_ON_MISMATCH", "warn");
    let output = run_ok(command, "domains.c");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("checks passed"), "{stdout}\n{stderr}");
    let json = json_between_markers(&stdout);
    validate(&json);

    let known = &json["domains"]["c-known"];
    assert_eq!(known["allocations"], 7, "{known}"); // a to e, the realloc's new block, u
    assert_eq!(known["frees"], 5, "{known}"); // b, e, c, the realloc's old block, u
    assert_eq!(known["live_blocks"], 2, "{known}");
    // Allocated bytes count blocks at their usable size: at least what was asked, at most a
    // size class's rounding (under 25%) and a huge block's page more.
    let requested = 100 + 300 + 1000 + (5 << 20) + 40 + 20000 + 64;
    let allocated = known["allocated_bytes"].as_u64().unwrap();
    assert!(
        (requested..requested + requested / 4 + 4096).contains(&allocated),
        "{known}"
    );
    let live = known["live_usable_bytes"].as_u64().unwrap();
    assert!(
        (20000 + (5 << 20)..20000 + (5 << 20) + 16384).contains(&live),
        "{known}"
    );
    assert!(known["peak_bytes"].as_u64().unwrap() >= live);

    // Mismatches count against the block's domain: mem (twice, free of a mem block), raw (one
    // raw block through mem), obj (through c-known, and realloc'd through raw), c-known
    // (through obj).
    let mismatches = |name: &str| json["domains"][name]["mismatches"].as_u64().unwrap();
    assert_eq!(mismatches("mem"), 2);
    assert_eq!(mismatches("raw"), 1);
    assert_eq!(mismatches("obj"), 2);
    assert_eq!(mismatches("c-known"), 1);
    // One line per distinct pair: the second mem-through-raw free is counted, not printed.
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" family, but "))
        .collect();
    for (call, family, owner) in [
        ("free", "raw", "mem"),
        ("free", "mem", "raw"),
        ("free", "c-known", "obj"),
        ("free", "obj", "c-known"),
        ("realloc", "raw", "obj"),
    ] {
        let wanted = format!("through the '{family}' family, but the block belongs to '{owner}'");
        assert!(
            reports
                .iter()
                .any(|l| l.contains(&wanted) && l.contains(&format!("{call}(0x"))),
            "no report of {call} {owner} through {family}:\n{stderr}"
        );
    }
    assert_eq!(reports.len(), 5, "{stderr}");
    assert!(
        stderr.contains("tm_domain_free(): no domain 133"),
        "{stderr}"
    );
    // The table printed by tm_stats_print names the user domain.
    assert!(
        stdout.lines().any(|l| l.starts_with("c-known ")),
        "{stdout}"
    );
}

#[test]
fn mismatch_policy_abort_and_ignore() {
    let binary = build("domains.c");
    let mut command = command_with(Some(Linkage::Linked), &binary);
    command.env("TALLYMALLOC_ON_MISMATCH", "abort");
    let (output, _) = run_with_timeout(command, 60);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("aborting (TALLYMALLOC_ON_MISMATCH=abort)"),
        "{stderr}"
    );

    let mut command = command_with(Some(Linkage::Linked), &binary);
    command.env("TALLYMALLOC_ON_MISMATCH", "ignore");
    let output = run_ok(command, "domains.c, mismatches ignored");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(" family, but "), "{stderr}");
    let json = json_between_markers(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(json["domains"]["mem"]["mismatches"], 2, "still counted");
}

#[test]
fn exit_table_on_stderr_for_any_program() {
    // A program that knows nothing of tallymalloc, preloaded.
    let mut command = command_with(Some(Linkage::Preloaded), Path::new("sort"));
    command.env("TALLYMALLOC_STATS", "1").arg("/etc/passwd");
    let output = run_ok(command, "sort with TALLYMALLOC_STATS=1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tallymalloc stats (pid "), "{stderr}");
    let raw = stderr
        .lines()
        .find(|l| l.starts_with("raw "))
        .expect(&stderr);
    let allocations: u64 = raw.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(allocations > 0, "{raw}");
    assert!(stderr.contains("process: reserved "), "{stderr}");
}

#[test]
fn exit_json_with_a_timeline() {
    let binary = build("timeline.c");
    let directory = scratch().join("timeline-out");
    std::fs::create_dir_all(&directory).unwrap();
    let pattern = directory.join("stats-%p.json");
    let mut command = command_with(Some(Linkage::Linked), &binary);
    command
        .env("TALLYMALLOC_STATS", format!("json:{}", pattern.display()))
        .env("TALLYMALLOC_STATS_INTERVAL", "10");
    let child_pid = {
        let output = run_ok(command, "timeline.c");
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read_dir(&directory).unwrap().count()
    };
    assert_eq!(child_pid, 1, "one process, one file named by its pid");
    let file = std::fs::read_dir(&directory)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    std::fs::remove_file(&file).unwrap();
    validate(&json);
    let timeline = json["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 10, "{} samples", timeline.len());
    let mem: Vec<u64> = timeline
        .iter()
        .map(|sample| sample["live_bytes"]["mem"].as_u64().unwrap())
        .collect();
    let highest = *mem.iter().max().unwrap();
    assert!(highest >= 64 * 1024 * 100, "the working set grew: {mem:?}");
    let times: Vec<u64> = timeline
        .iter()
        .map(|s| s["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    assert_eq!(json["domains"]["mem"]["live_blocks"], 0);
    // The documented bound for one thread: a publication step plus one 512 KiB page.
    let peak = json["domains"]["mem"]["peak_bytes"].as_u64().unwrap();
    let top = 300 * 64 * 1024;
    assert!(
        (top - 64 * 1024 - 512 * 1024..=top).contains(&peak),
        "{peak}"
    );
}

#[test]
fn bad_stats_options_are_named() {
    let mut command = command_with(Some(Linkage::Preloaded), Path::new("true"));
    command
        .env("TALLYMALLOC_STATS", "yes")
        .env("TALLYMALLOC_STATS_INTERVAL", "often")
        .env("TALLYMALLOC_ON_MISMATCH", "sometimes");
    let output = run_ok(command, "true with bad options");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "TALLYMALLOC_STATS=yes",
        "TALLYMALLOC_STATS_INTERVAL=often",
        "TALLYMALLOC_ON_MISMATCH=sometimes",
    ] {
        assert!(
            stderr.contains(&format!("ignoring {name}: expected")),
            "{stderr}"
        );
    }
}

#[test]
fn the_sizing_idiom_gives_whole_documents_while_threads_allocate() {
    // With and without a timeline that grows every millisecond between the two calls.
    let binary = build("stats_sizing.c");
    for interval in ["0", "1"] {
        let mut command = command_with(Some(Linkage::Linked), &binary);
        command
            .arg("300")
            .env("TALLYMALLOC_STATS_INTERVAL", interval);
        let output = run_ok(command, "stats_sizing.c");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("300 rounds, checks passed"),
            "{}",
            tail(&stdout)
        );
        let mut documents = 0;
        for piece in stdout.split("JSON-BEGIN\n").skip(1) {
            let text = &piece[..piece.find("\nJSON-END").expect("an end marker")];
            let json: Value = serde_json::from_str(text)
                .unwrap_or_else(|error| panic!("{error}: {}", &text[text.len() - 200..]));
            validate(&json);
            documents += 1;
        }
        assert_eq!(documents, 300, "interval {interval}");
    }
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(2000)..]
}
