//! Debug mode on a corpus of misuse: one small C program per bug, run under
//! `LD_PRELOAD=libtallymalloc.so` with `TALLYMALLOC_DEBUG=1`; each must be reported with its
//! kind and a stack holding the right source line (the one marked `reported`, else the one
//! marked `the bug`), and stop the process; leaks must be counted exactly and grouped by the
//! line that allocated them; the clean program must run to the end with no report.

mod common;

use common::{command_with, compile, run_with_timeout, scratch, Linkage};
use std::path::Path;

/// Builds `tests/c/misuse/NAME.c` (-g -O0, so that every bug stays in the binary) and runs it
/// in debug mode; returns the exit status and stderr.
fn run_misuse(name: &str, environment: &[(&str, &str)]) -> (Option<i32>, String) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/misuse/{name}.c"));
    let binary = scratch().join(format!("misuse-{name}"));
    compile(&[source], &binary, None, &["-O0", "-w"]);
    let mut command = command_with(Some(Linkage::Preloaded), &binary);
    command
        .env("TALLYMALLOC_DEBUG", "1")
        .envs(environment.iter().copied());
    let (output, timed_out) = run_with_timeout(command, 60);
    assert!(!timed_out, "{name} hung");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `NAME.c:LINE` of the line a report must show: the one marked `reported`, else `the bug`.
fn marked_line(name: &str) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/misuse/{name}.c"));
    let text = std::fs::read_to_string(source).unwrap();
    let find = |marker: &str| text.lines().position(|l| l.contains(marker));
    let index = find("/* reported")
        .or_else(|| find("/* the bug */"))
        .unwrap();
    format!("{name}.c:{}", index + 1)
}

#[test]
fn each_bug_is_reported_by_kind_and_stops_the_program() {
    let cases = [
        ("double_free", "double free in free("),
        ("invalid_free", "invalid pointer in free("),
        ("stack_free", "invalid pointer in free("),
        ("interior_free", "interior pointer in free("),
        ("mismatch_to_free", "domain mismatch in free("),
        ("mismatch_from_malloc", "domain mismatch in free("),
        ("overflow_by_one", "write past the end in free("),
        ("underflow", "write before the start in free("),
        ("write_after_free", "write after free in check("),
        (
            "realloc_freed",
            "use after free (realloc of a freed block) in realloc(",
        ),
        ("calloc_overflow", "absurd size in calloc("),
        ("reallocarray_overflow", "absurd size in reallocarray("),
        ("absurd_size", "absurd size in malloc("),
    ];
    for (name, expected) in cases {
        let (status, stderr) = run_misuse(name, &[]);
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
        assert_eq!(status, None, "{name} should have been aborted:\n{stderr}");
        assert!(
            stderr.contains("aborting: debug mode found misuse"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn with_on_error_report_the_program_carries_on() {
    let (status, stderr) = run_misuse("double_free", &[("TALLYMALLOC_ON_ERROR", "report")]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("double free in free("), "{stderr}");
    assert!(stderr.contains("1 errors found"), "{stderr}");
}

#[test]
fn leaks_are_counted_exactly_at_exit() {
    let report = scratch().join("leaks.json");
    let _ = std::fs::remove_file(&report);
    let target = report.display().to_string();
    let (status, stderr) = run_misuse("leak", &[("TALLYMALLOC_REPORT", target.as_str())]);
    assert_eq!(status, Some(0), "{stderr}");
    // 10 blocks of 1000 bytes and 3 of 5000 (the C runtime frees what it allocates).
    assert!(
        stderr.contains("leak: 13 blocks, 25000 bytes still live at exit in domain raw"),
        "{stderr}"
    );
    // Grouped by site, largest first: 3 x 5000 bytes, then 10 x 1000 (leak.c:4).
    let first = stderr
        .find("leak site 1: 3 blocks, 15000 bytes")
        .expect(&stderr);
    let second = stderr
        .find("leak site 2: 10 blocks, 10000 bytes")
        .expect(&stderr);
    assert!(first < second);
    assert!(stderr[second..].contains(&marked_line("leak")), "{stderr}");
    assert!(stderr[first..second].contains("in leak_large"), "{stderr}");
    // The same as JSON (TALLYMALLOC_REPORT), largest site first.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the JSON report")).unwrap();
    let sites = json["sites"].as_array().unwrap();
    assert_eq!(
        (&sites[0]["blocks"], &sites[0]["bytes"]),
        (&3.into(), &15000.into())
    );
    assert_eq!(
        (&sites[1]["blocks"], &sites[1]["bytes"]),
        (&10.into(), &10000.into())
    );
    let location = sites[1]["stack"][0]["location"].as_str().unwrap();
    assert!(location.ends_with(&marked_line("leak")), "{location}");
    assert_eq!(json["errors"], 0);
}

#[test]
fn the_clean_program_gets_no_report() {
    let (status, stderr) = run_misuse("clean", &[]);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("at exit: 0 blocks (0 bytes) live, 0 errors found"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("tallymalloc debug:").count(), 1, "{stderr}");
}

#[test]
fn the_c_api_switches_debug_mode_on_and_checks_on_demand() {
    let binary = scratch().join("debug-api");
    compile(
        &[Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/debug_api.c")],
        &binary,
        Some(Linkage::Linked),
        &["-O0"],
    );
    let mut command = command_with(Some(Linkage::Linked), &binary);
    command.env("TALLYMALLOC_ON_ERROR", "report");
    let (output, _) = run_with_timeout(command, 60);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("check: 0 before, 1 after the overflow"),
        "{stdout}"
    );
    assert!(stderr.contains("write past the end in check("), "{stderr}");
    // tm_leak_report lists the block still live, with the line that allocated it.
    assert!(stdout.contains("; 1 live"), "{stdout}");
    assert!(
        stderr.contains("bytes still live now in domain raw"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "debug_api.c:{}",
            line_of("debug_api.c", "char *volatile block = malloc(10);")
        )),
        "the leak's site: {stderr}"
    );
    assert!(stdout.contains("backtraces agree"), "{stdout}");
}

/// The line number of the first line of `tests/c/NAME` holding `text`.
fn line_of(name: &str, text: &str) -> usize {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}"));
    let source = std::fs::read_to_string(source).unwrap();
    1 + source.lines().position(|line| line.contains(text)).unwrap()
}

/// Runs `program` under the library in debug mode; returns the exit status, stdout and stderr.
fn run_in_debug_mode(
    program: &Path,
    arguments: &[&str],
    environment: &[(&str, &str)],
    seconds: u64,
) -> (Option<i32>, String, String) {
    let mut command = command_with(Some(Linkage::Preloaded), program);
    command
        .env("TALLYMALLOC_DEBUG", "1")
        .envs(environment.iter().copied())
        .args(arguments);
    let (output, timed_out) = run_with_timeout(command, seconds);
    assert!(!timed_out, "{} hung", program.display());
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn stacks_name_every_function_with_or_without_frame_pointers() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/debug_frames.c");
    for (name, flag) in [
        ("without", "-fomit-frame-pointer"),
        ("with", "-fno-omit-frame-pointer"),
    ] {
        let binary = scratch().join(format!("debug-frames-{name}"));
        compile(std::slice::from_ref(&source), &binary, None, &[flag]);
        let (status, _, stderr) = run_in_debug_mode(&binary, &[], &[], 60);
        assert_eq!(status, Some(0), "{name} frame pointers: {stderr}");
        let site = stderr
            .find("1 blocks, 4242 bytes, allocated at:")
            .unwrap_or_else(|| panic!("{name} frame pointers: no leak site in\n{stderr}"));
        let frames: Vec<&str> = stderr[site..].lines().skip(1).take(5).collect();
        for (frame, function) in frames.iter().zip([
            "chain_innermost",
            "chain_middle",
            "chain_outer",
            "chain_entry",
            "main",
        ]) {
            assert!(
                frame.contains(&format!(" in {function}")) && frame.contains("debug_frames.c:"),
                "{name} frame pointers: expected {function} in {frame:?} of\n{stderr}"
            );
        }
    }
}

#[test]
fn threads_that_come_and_go_keep_debug_mode_clean_and_the_quarantine_bounded() {
    let binary = scratch().join("debug-threads");
    compile(
        &[Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/debug_threads.c")],
        &binary,
        None,
        &[],
    );
    // A budget of 1 MiB, which blocks of up to 200 KB, freed now and then, would overrun if a
    // shard let go of too few blocks at a time.
    let budget = 1 << 20;
    let (status, stdout, stderr) = run_in_debug_mode(
        &binary,
        &["6"],
        &[("TALLYMALLOC_QUARANTINE", &budget.to_string())],
        240,
    );
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("6 rounds, 0 failures"), "{stdout}");
    assert!(stderr.contains(" 0 errors found"), "{stderr}");
    // Whatever glibc keeps for its threads may be listed; nothing the workers allocated.
    assert!(!stderr.contains(" in work "), "{stderr}");
    let summary = stderr
        .lines()
        .find(|line| line.contains("at exit:"))
        .expect(&stderr);
    let quarantined: u64 = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" bytes of freed blocks in quarantine"))
        .and_then(|bytes| bytes.parse().ok())
        .expect(summary);
    assert!(quarantined > 0 && quarantined <= budget, "{summary}");
}

#[test]
fn thread_churn_in_debug_mode_keeps_memory_bounded() {
    let binary = scratch().join("debug-churn");
    compile(
        &[Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/debug_churn.c")],
        &binary,
        None,
        &[],
    );
    let (status, stdout, stderr) = run_in_debug_mode(&binary, &["2000"], &[], 240);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let peak: u64 = stdout
        .trim()
        .strip_prefix("peak KiB ")
        .and_then(|kib| kib.parse().ok())
        .expect(&stdout);
    // The quarantine's 16 MiB and what it pins; 2000 threads each leaving their segments
    // behind came to 180 MB before abandoned segments were taken up oldest first.
    assert!(peak < 80 * 1024, "peak resident {peak} KiB\n{stderr}");
}
