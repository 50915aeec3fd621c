//! The `tallymalloc` command end to end: `run` on C programs (known allocations, exit codes, a
//! death by signal, a missing program) and on python3, its JSON against the schema, its HTML
//! rendered by headless Chromium, `report`, `compare` and `bench --list`; the command alone,
//! as `cargo install` leaves it, on the library it carries.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::chromium;

fn tallymalloc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tallymalloc"))
}

fn scratch() -> PathBuf {
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// `tests/c/known.c`, compiled once per test run (tests run side by side).
fn known_program() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| c_program("known")).clone()
}

fn c_program(name: &str) -> PathBuf {
    common::compile_c(name, &scratch())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tallymalloc run FLAGS --json JSON -- PROGRAM`.
fn run_with_json(flags: &[&str], json: &Path, program: &Path) -> Output {
    tallymalloc()
        .arg("run")
        .args(flags)
        .arg("--json")
        .arg(json)
        .arg("--")
        .arg(program)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn run_reports_known_allocations_and_passes_the_exit_status_through() {
    let program = known_program();
    let json = scratch().join("known.json");
    let output = run_with_json(&["--interval", "1"], &json, &program);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("exited with status 3"), "{stderr}");
    assert!(stderr.contains("live at exit by block size"), "{stderr}");
    let document = read_json(&json);
    tallymalloc_cli::schema::check_stats(&document).unwrap();
    let raw = &document["domains"]["raw"];
    let number = |value: &Value| value.as_u64().unwrap();
    // The program's 1000 kept blocks of 100 bytes (112-byte class), and what libc itself keeps.
    let live = number(&raw["live_blocks"]);
    assert!((1000..1010).contains(&live), "live blocks {live}");
    assert!(number(&raw["allocations"]) >= 1500);
    assert!(number(&raw["peak_bytes"]) >= 1000 * 112);
    let class_112 = document["size_classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["size"] == 112)
        .unwrap();
    assert!(number(&class_112["live_blocks"]) >= 1000);
}

#[test]
fn a_death_by_signal_is_reported_as_the_shell_does() {
    // SIGTERM asks a process to end: it writes its stats first, then ends by the signal. (Not
    // a shell: dash sets SIGTERM's disposition to the default itself, replacing the handler.)
    let output = tallymalloc()
        .args(["run", "--", "python3", "-c"])
        .arg("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 15), "{stderr}");
    assert!(stderr.contains("was killed by SIGTERM"), "{stderr}");
    assert!(stderr.contains("\nraw "), "{stderr}");
    // SIGKILL leaves no chance.
    let output = tallymalloc()
        .args(["run", "--", "sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + 9), "{stderr}");
    assert!(stderr.contains("was killed by SIGKILL"), "{stderr}");
    assert!(stderr.contains("no stats"), "{stderr}");
}

/// The processes of a `--json` document, by pid.
fn processes_by_pid(document: &Value) -> std::collections::BTreeMap<u64, &Value> {
    document["processes"]
        .as_array()
        .expect("a processes list")
        .iter()
        .map(|process| (process["process"]["pid"].as_u64().unwrap(), process))
        .collect()
}

#[test]
fn a_shell_script_starting_three_programs_reports_all_three() {
    let program = known_program();
    let json = scratch().join("three.json");
    let script = format!("for n in 1 2 3; do {} & done; wait", program.display());
    let output = tallymalloc()
        .args(["run", "--json"])
        .arg(&json)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let document = read_json(&json);
    tallymalloc_cli::schema::check_stats(&document).unwrap();
    let processes = processes_by_pid(&document);
    let shell = document["process"]["pid"].as_u64().unwrap();
    assert!(processes.contains_key(&shell), "the shell is one of them");
    let programs: Vec<&&Value> = processes
        .values()
        .filter(|p| p["command"] == program.display().to_string())
        .collect();
    assert_eq!(programs.len(), 3, "{stderr}");
    for started in programs {
        assert_eq!(started["process"]["parent_pid"].as_u64(), Some(shell));
        let live = started["domains"]["raw"]["live_blocks"].as_u64().unwrap();
        assert!((1000..1010).contains(&live), "live blocks {live}");
    }
    // A row each, under the shell, and the total.
    let table: Vec<&str> = stderr
        .lines()
        .skip_while(|line| !line.starts_with("processes: "))
        .collect();
    assert!(table[0].starts_with("processes: 4 "), "{stderr}");
    let rows = table
        .iter()
        .filter(|line| line.ends_with(&format!("  {}", program.display())))
        .count();
    assert_eq!(rows, 3, "{stderr}");
    assert!(
        table.iter().any(|l| l.trim_start().starts_with("total")),
        "{stderr}"
    );
}

#[test]
fn children_that_leave_by_exit_or_are_terminated_are_reported_and_vfork_children_are_not() {
    let program = c_program("tree");
    let json = scratch().join("tree.json");
    let output = run_with_json(&["--profile"], &json, &program);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stdout = text(&output.stdout);
    let pid_of = |word: &str| -> u64 {
        let line = stdout.lines().find(|l| l.starts_with(word)).unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let document = read_json(&json);
    tallymalloc_cli::schema::check_stats(&document).unwrap();
    let processes = processes_by_pid(&document);
    assert_eq!(processes.len(), 3, "{:?}", processes.keys());
    assert!(!processes.contains_key(&pid_of("vforked")));
    let program_pid = document["process"]["pid"].as_u64().unwrap();
    for (word, held) in [("exited", 3u64 << 20), ("terminated", 5 << 20)] {
        let child = processes[&pid_of(word)];
        assert_eq!(child["process"]["parent_pid"].as_u64(), Some(program_pid));
        let peak = child["domains"]["raw"]["peak_bytes"].as_u64().unwrap();
        assert!(peak >= held, "{word}: peak {peak}");
        assert!(child["profile"]["samples"].as_u64().unwrap() > 0, "{word}");
    }
    // The top level's profile merges the three: 9 MiB held at the processes' peaks together.
    let merged: u64 = processes
        .values()
        .map(|p| p["profile"]["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(document["profile"]["samples"].as_u64(), Some(merged));
    let peak = document["profile"]["peak_bytes"].as_u64().unwrap();
    assert!(peak > 4 << 20, "merged peak {peak}");
}

#[test]
fn a_missing_program_exits_127_with_its_name() {
    let output = tallymalloc()
        .args(["run", "--", "no-such-program-anywhere"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(127));
    assert!(text(&output.stderr).contains("no-such-program-anywhere: command not found"));
    let output = tallymalloc()
        .args([
            "compare",
            "--reps",
            "1",
            "--allocators",
            "system",
            "--",
            "no-such-program-anywhere",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(127));
}

#[test]
fn bad_flags_get_usage() {
    for arguments in [
        &["run"][..],
        &["run", "--interval", "0", "--", "true"],
        &["compare", "--reps", "zero", "--", "true"],
        &["frobnicate"],
    ] {
        let output = tallymalloc().args(arguments).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{arguments:?}: {stderr}");
        assert!(stderr.contains("--help"), "{arguments:?}: {stderr}");
    }
}

#[test]
fn python_programs_are_measured() {
    let json = scratch().join("python.json");
    let output = tallymalloc()
        .args(["run", "--json"])
        .arg(&json)
        .args([
            "--",
            "python3",
            "-c",
            "x = [bytes(1000) for _ in range(10000)]; print(len(x))",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim(),
        "10000",
        "the program's stdout passes through"
    );
    let document = read_json(&json);
    tallymalloc_cli::schema::check_stats(&document).unwrap();
    let peak = document["domains"]["raw"]["peak_bytes"].as_u64().unwrap();
    assert!(peak >= 10_000 * 1000, "peak {peak}");
}

#[test]
fn the_html_report_renders_in_chromium_and_report_reads_the_json_again() {
    let program = known_program();
    let (json, html) = (scratch().join("html.json"), scratch().join("report.html"));
    let output = tallymalloc()
        .args(["run", "--interval", "1", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--")
        .arg(&program)
        .arg("50")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));

    let browser = |extra: &[&str]| -> Output {
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1100,1300",
            ])
            .args(extra)
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap()
    };
    let dom = text(&browser(&["--dump-dom"]).stdout);
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "the script did not finish: {dom}"
    );
    assert!(
        dom.contains(r#"data-series="resident""#),
        "no resident line"
    );
    assert!(dom.contains(r#"data-series="live raw""#), "no raw line");
    assert!(dom.contains("<rect"), "no histogram bar");
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = format!("--screenshot={}", screenshot.display());
    browser(&[shot.as_str()]);
    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000));

    // `report` reads the same JSON back and can write the HTML again.
    let again = scratch().join("again.html");
    let output = tallymalloc()
        .arg("report")
        .arg(&json)
        .arg("--html")
        .arg(&again)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("live at exit by block size"));
    let page = std::fs::read_to_string(&again).unwrap();
    assert!(page.contains(r#"<svg id="chart""#) && page.contains(r#""live_blocks""#));

    // And turns away what is not a stats report.
    let bad = scratch().join("bad.json");
    std::fs::write(&bad, r#"{"version": 1}"#).unwrap();
    let output = tallymalloc().arg("report").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not a stats report"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn compare_gives_a_row_per_installed_allocator() {
    let json = scratch().join("compare.json");
    let output = tallymalloc()
        .args(["compare", "--reps", "1", "--json"])
        .arg(&json)
        .args(["--", "sort", "--version"])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    let installed: Vec<&str> = [
        "system",
        "tallymalloc",
        "mimalloc-deb",
        "jemalloc",
        "tcmalloc",
    ]
    .into_iter()
    .filter(|name| !stderr.contains(&format!("{name} is not installed")))
    .collect();
    assert!(installed.contains(&"system") && installed.contains(&"tallymalloc"));
    for name in &installed {
        assert!(
            stdout.lines().any(|line| line.starts_with(name)),
            "no row for {name}: {stdout}"
        );
    }
    let document = read_json(&json);
    assert_eq!(
        document["allocators"].as_array().unwrap().len(),
        installed.len()
    );
}

#[test]
fn bench_lists_the_suite() {
    let output = tallymalloc().args(["bench", "--list"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let listing = text(&output.stdout);
    assert!(
        listing.contains("larson") && listing.contains("compiler"),
        "{listing}"
    );
}

#[test]
fn run_debug_reports_leaks_by_site_with_their_source_line() {
    let program = known_program();
    let output = tallymalloc()
        .args(["run", "--debug", "--"])
        .arg(&program)
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    // known.c keeps 1000 blocks of 100 bytes, allocated on its line 11.
    let site = stderr
        .find("leak site 1: 1000 blocks, 100000 bytes")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(stderr[site..].contains("known.c:11"), "{stderr}");
    assert!(stderr.contains("0 errors found"), "{stderr}");
}

#[test]
fn run_debug_puts_the_leaks_in_the_json_and_the_html_report() {
    let directory = scratch();
    let (json, html) = (directory.join("leaks.json"), directory.join("leaks.html"));
    let output = tallymalloc()
        .args(["run", "--debug", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--")
        .arg(known_program())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let document = read_json(&json);
    tallymalloc_cli::schema::check_stats(&document).unwrap();
    let sites = document["leaks"]["sites"].as_array().unwrap();
    assert_eq!(
        (sites[0]["blocks"].as_u64(), sites[0]["bytes"].as_u64()),
        (Some(1000), Some(100_000))
    );
    let frames = sites[0]["stack"].as_array().unwrap();
    assert!(
        frames
            .iter()
            .any(|f| f["location"].as_str().unwrap().contains("known.c:11")),
        "{frames:?}"
    );
    // The page draws the table: a row for the site, with its stack.
    let dom = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = text(&dom.stdout);
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "the script did not finish: {dom}"
    );
    let table = &dom[dom.find(r#"<table id="leaks""#).expect("no leak table")..];
    assert!(
        table.contains("<td>1,000</td>") && table.contains("known.c:11"),
        "{table}"
    );
    // known.c keeps its 1000 blocks; what tallymalloc's own sampler thread took is no leak.
    assert!(
        dom.contains(
            "1,000 blocks (97.7 KiB) were live at exit, from 1 site; debug mode found 0 errors"
        ),
        "{dom}"
    );
    // `report` reads the merged document back, leaks and all.
    let again = tallymalloc().arg("report").arg(&json).output().unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
}

/// The command copied alone into a directory of its own, as `cargo install` leaves it: no
/// library beside it, none in `../lib`, none in a build tree under the working directory.
fn lone_command(name: &str) -> (PathBuf, PathBuf) {
    let home = scratch().join(name);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let command = home.join("bin/tallymalloc");
    std::fs::copy(env!("CARGO_BIN_EXE_tallymalloc"), &command).unwrap();
    (home, command)
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_lone_command_writes_out_the_library_it_carries_and_runs_on_it() {
    let (home, command) = lone_command("lone-carried");
    let cache = home.join("cache");
    let library = Command::new(&command)
        .arg("library")
        .current_dir(&home)
        .env_remove("TALLYMALLOC_LIB")
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(library.status.success(), "{}", text(&library.stderr));
    let path = PathBuf::from(text(&library.stdout).trim());
    assert!(
        path.starts_with(cache.join("tallymalloc")),
        "{}",
        path.display()
    );
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x7fELF");
    let written = inode(&path);

    let run = Command::new(&command)
        .args(["run", "--", "sort", "/etc/passwd"])
        .current_dir(&home)
        .env_remove("TALLYMALLOC_LIB")
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("exited with status 0"), "{stderr}");
    assert!(stderr.contains("raw"), "no domain table: {stderr}");
    // The copy written once is the one used again, not written over.
    assert_eq!(inode(&path), written);
    assert_eq!(
        std::fs::read_dir(cache.join("tallymalloc"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_lone_command_that_cannot_write_its_library_lists_what_it_tried() {
    let (home, command) = lone_command("lone-nowhere");
    let output = Command::new(&command)
        .arg("library")
        .current_dir(&home)
        .env_remove("TALLYMALLOC_LIB")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME")
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for tried in [
        "TALLYMALLOC_LIB (unset)".to_string(),
        home.join("bin/libtallymalloc.so").display().to_string(),
        home.join("lib/libtallymalloc.so").display().to_string(),
        "neither XDG_CACHE_HOME nor HOME is set".to_string(),
        home.join("target/release/libtallymalloc.so")
            .display()
            .to_string(),
    ] {
        assert!(stderr.contains(&tried), "{tried} not in: {stderr}");
    }
}
