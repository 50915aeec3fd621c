//! C and C++ programs that check libtallymalloc's contract and process life (fork, thread
//! churn, dlopen, C++ operators), each run linked against the library and under LD_PRELOAD.

mod common;

use common::{command_with, compile, run_ok, run_with_timeout, scratch, source, Linkage};
use std::process::{Command, Output};

const BOTH: [Linkage; 2] = [Linkage::Linked, Linkage::Preloaded];

/// Builds `file` for `linkage`, runs it with a timeout, returns its stdout and stderr.
fn build_and_run(file: &str, linkage: Linkage, arguments: &[&str]) -> (String, String) {
    let stem = file.split('.').next().unwrap();
    let binary = scratch().join(format!("{stem}-{linkage:?}"));
    compile(&[source(file)], &binary, Some(linkage), &[]);
    let mut command = command_with(Some(linkage), &binary);
    command.args(arguments);
    let output = run_ok(command, &format!("{file} ({linkage:?})"));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn contract_holds_linked_and_preloaded() {
    for linkage in BOTH {
        let (stdout, stderr) = build_and_run("contract.c", linkage, &[]);
        assert!(stdout.contains("checks passed"), "{stdout}");
        // The invalid-pointer calls are reported, one line each, with the address.
        for function in ["free", "realloc", "malloc_usable_size"] {
            let expected = format!("tallymalloc: {function}(): invalid pointer 0x");
            assert!(
                stderr.contains(&expected),
                "no report for {function}: {stderr}"
            );
        }
        assert_eq!(stderr.lines().count(), 3, "unexpected stderr: {stderr}");
    }
}

#[test]
fn invalid_pointer_aborts_when_asked() {
    let binary = scratch().join("contract-abort");
    compile(&[source("contract.c")], &binary, None, &[]);
    let mut command = command_with(Some(Linkage::Preloaded), &binary);
    command.env("TALLYMALLOC_ON_ERROR", "abort");
    let (output, _) = run_with_timeout(command, 60);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tallymalloc: free(): invalid pointer 0x"),
        "{stderr}"
    );
    assert!(
        stderr.contains("aborting: TALLYMALLOC_ON_ERROR=abort"),
        "{stderr}"
    );
}

/// Three threads allocate and free, a fourth takes the stats, domain, collection and debug
/// locks, and the purger runs, while the main thread forks 300 times; each child allocates,
/// frees and takes those locks too (fork.c). A lock held across `fork` by a thread that does
/// not exist in the child shows as a timeout. Every mode takes its own locks: debug mode its
/// live-block list, quarantine and site table, the stats timeline its store. The runs go side
/// by side; each has its own timeout.
#[test]
fn fork_while_threads_allocate_in_every_mode() {
    // With debug assertions (scripts/test's last stage), the library checks the lock order on
    // every acquisition and runs unoptimised: fewer forks, and no hardened build to run.
    let forks = if cfg!(debug_assertions) { "40" } else { "300" };
    let plain = scratch().join("fork-plain");
    compile(&[source("fork.c")], &plain, None, &[]);
    let linked = scratch().join("fork-linked");
    compile(&[source("fork.c")], &linked, Some(Linkage::Linked), &[]);
    let mut runs: Vec<(&str, Command)> = Vec::new();
    runs.push(("linked", command_with(Some(Linkage::Linked), &linked)));
    for (mode, variable, value) in [
        ("preloaded", "", ""),
        ("TALLYMALLOC_DEBUG=1", "TALLYMALLOC_DEBUG", "1"),
        ("TALLYMALLOC_SECURE=1", "TALLYMALLOC_SECURE", "1"),
        (
            "TALLYMALLOC_STATS_INTERVAL=1",
            "TALLYMALLOC_STATS_INTERVAL",
            "1",
        ),
    ] {
        let mut command = command_with(Some(Linkage::Preloaded), &plain);
        if !variable.is_empty() {
            command.env(variable, value);
        }
        runs.push((mode, command));
    }
    if !cfg!(debug_assertions) {
        let mut command = Command::new(&plain);
        command.env("LD_PRELOAD", common::hardened_library());
        runs.push(("the hardened library", command));
    }
    std::thread::scope(|scope| {
        let runs: Vec<_> = runs
            .into_iter()
            .map(|(mode, mut command)| {
                command.arg(forks);
                scope.spawn(move || (mode, run_with_timeout(command, 240)))
            })
            .collect();
        for run in runs {
            let (mode, (output, timed_out)) = run.join().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                !timed_out && output.status.success(),
                "fork.c, {mode}: {}{}\n{stdout}\n{}",
                output.status,
                if timed_out {
                    ", timed out (a deadlock)"
                } else {
                    ""
                },
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                stdout.contains(&format!("{forks} of {forks} children exited cleanly")),
                "fork.c, {mode}: {stdout}"
            );
        }
    });
}

#[test]
fn injected_mapping_faults_fail_allocations_cleanly() {
    let binary = scratch().join("faults");
    compile(&[source("faults.c")], &binary, None, &[]);
    // A third of the mapping calls refused, all run long; then the first 100 refused, after
    // which everything must succeed.
    for (plan, mode) in [("mmap:33%", "mixed"), ("mmap:after=0,for=100", "recover")] {
        let mut command = command_with(Some(Linkage::Preloaded), &binary);
        command.env("TALLYMALLOC_FAULT", plan).arg(mode);
        let output = run_ok(command, plan);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("failed cleanly"), "{plan}: {stdout}");
    }
}

#[test]
fn an_address_space_limit_ends_in_enomem_not_a_crash() {
    for linkage in BOTH {
        let (stdout, _) = build_and_run("address_limit.c", linkage, &[]);
        assert!(stdout.contains("reached 8 times, cleanly"), "{stdout}");
    }
}

#[test]
fn thousands_of_threads_start_and_exit() {
    for linkage in BOTH {
        let (stdout, _) = build_and_run("threads.c", linkage, &[]);
        assert!(
            stdout.contains("4000 threads ran, 0 corrupt blocks"),
            "{stdout}"
        );
    }
}

#[test]
fn libraries_load_and_unload_with_dlopen() {
    let plugin = scratch().join("plugin.so");
    compile(&[source("plugin.c")], &plugin, None, &["-shared", "-fPIC"]);
    for linkage in BOTH {
        let (stdout, _) = build_and_run("dlopen_main.c", linkage, &[plugin.to_str().unwrap()]);
        assert!(stdout.contains("50 load and unload rounds"), "{stdout}");
    }
}

#[test]
fn cxx_operators_and_containers() {
    for linkage in BOTH {
        let (stdout, _) = build_and_run("containers.cpp", linkage, &[]);
        assert!(stdout.contains("all checks passed"), "{stdout}");
    }
}

#[test]
fn header_compiles_as_c_and_cxx_and_the_prefixed_api_works() {
    let program = scratch().join("prefixed.c");
    std::fs::write(
        &program,
        r#"
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include "tallymalloc.h"
int main(void) {
  char *block = tm_malloc(100);
  strcpy(block, "prefixed");
  block = tm_realloc(block, 100000);
  int ok = strcmp(block, "prefixed") == 0 && tm_is_ours(block) && tm_usable_size(block) >= 100000;
  tm_free(block);
  int *zeroed = tm_calloc(10, sizeof(int));
  ok = ok && zeroed[9] == 0;
  tm_free(zeroed);
  void *aligned = tm_aligned_alloc(4096, 10);
  ok = ok && ((uintptr_t)aligned % 4096) == 0 && tm_aligned_alloc(3, 10) == NULL;
  tm_free(aligned);
  tm_collect();
  printf(ok ? "prefixed: ok\n" : "prefixed: FAILED\n");
  return !ok;
}
"#,
    )
    .unwrap();
    let binary = scratch().join("prefixed");
    compile(&[program], &binary, Some(Linkage::Linked), &[]);
    let output = run_ok(command_with(None, &binary), "prefixed API");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "prefixed: ok\n");
    let cxx = scratch().join("header.cpp");
    std::fs::write(
        &cxx,
        "#include \"tallymalloc.h\"\nint main() { tm_free(tm_malloc(1)); }\n",
    )
    .unwrap();
    compile(
        &[cxx],
        &scratch().join("header-cxx"),
        Some(Linkage::Linked),
        &[],
    );
}

#[test]
fn options_are_checked_and_reported() {
    let binary = scratch().join("true-program");
    let program = scratch().join("true.c");
    std::fs::write(
        &program,
        "#include <stdlib.h>\nint main(void) { free(malloc(10)); return 0; }\n",
    )
    .unwrap();
    compile(&[program], &binary, None, &[]);
    let mut command = command_with(Some(Linkage::Preloaded), &binary);
    command
        .env("TALLYMALLOC_VERBOSE", "1")
        .env("TALLYMALLOC_PURGE_DELAY", "soon")
        .env("TALLYMALLOC_COLOUR", "blue");
    let (output, _) = run_with_timeout(command, 60);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("tallymalloc: ignoring TALLYMALLOC_PURGE_DELAY=soon: expected milliseconds"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "ignoring unknown option TALLYMALLOC_COLOUR (known, after TALLYMALLOC_: \
             PURGE_DELAY, ON_ERROR,"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(", PYTHON, LIB)\n"), "{stderr}");
    assert!(
        stderr.contains("options in force: TALLYMALLOC_PURGE_DELAY=10 TALLYMALLOC_ON_ERROR=report"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn static_library_replaces_malloc_in_the_executable() {
    let archive = common::library_directory().join("libtallymalloc.a");
    assert!(archive.exists(), "libtallymalloc.a is not built");
    let binary = scratch().join("contract-static");
    // The archive holds Rust's standard library, hence the system libraries; -rdynamic lets
    // the program find tm_is_ours with dlsym.
    let archive = archive.to_str().unwrap().to_owned();
    compile(
        &[source("contract.c")],
        &binary,
        None,
        &["-rdynamic", &archive, "-lgcc_s", "-lm", "-lrt"],
    );
    let (output, _) = run_with_timeout(command_with(None, &binary), 120);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("checks passed"),
        "{stdout}"
    );
}

#[test]
fn memory_goes_back_while_the_program_is_idle() {
    // Without the background purger the freed pages would wait for the next allocator call.
    for linkage in BOTH {
        let (stdout, _) = build_and_run("idle_return.c", linkage, &[]);
        assert!(stdout.starts_with("peak "), "{stdout}");
    }
}

/// Freed huge blocks serve a longer block together, their pages moved rather than faulted in
/// again, and that block grows a page at a time (huge_reuse.c). The purge delay is long, so
/// that a slow moment on a busy machine does not empty the cache before the block is asked for.
#[test]
fn freed_huge_blocks_serve_a_longer_one() {
    for linkage in BOTH {
        let binary = scratch().join(format!("huge_reuse-{linkage:?}"));
        compile(&[source("huge_reuse.c")], &binary, Some(linkage), &[]);
        let mut command = command_with(Some(linkage), &binary);
        command.env("TALLYMALLOC_PURGE_DELAY", "10000");
        let output = run_ok(command, &format!("huge_reuse.c ({linkage:?})"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("huge reuse: "), "{stdout}");
    }
}

/// How `secure.c` runs: the normal library, with `TALLYMALLOC_SECURE=1`, or the hardened
/// build (`libtallymalloc-secure.so`, secure mode built in).
#[derive(Clone, Copy, Debug)]
enum Security {
    Off,
    Option,
    Hardened,
}

const SECURE_WAYS: [Security; 2] = [Security::Option, Security::Hardened];

/// Runs `secure.c MODE` preloaded, secured as `security` says.
fn run_secure(mode: &str, security: Security) -> std::process::Output {
    // One binary per test: the tests run at once and would rebuild each other's.
    let binary = scratch().join(format!("secure-{mode}-{security:?}"));
    compile(&[source("secure.c")], &binary, None, &["-O0", "-pthread"]);
    let mut command = command_with(Some(Linkage::Preloaded), &binary);
    command.arg(mode);
    match security {
        Security::Off => {}
        Security::Option => {
            command.env("TALLYMALLOC_SECURE", "1");
        }
        Security::Hardened => {
            command.env("LD_PRELOAD", common::hardened_library());
        }
    }
    run_with_timeout(command, 60).0
}

/// Asserts that `secure.c MODE` aborted with `message` on stderr, in both secure ways.
fn assert_secure_aborts(mode: &str, message: &str) {
    for security in SECURE_WAYS {
        let output = run_secure(mode, security);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{security:?}: {output:?}");
        assert!(stderr.contains(message), "{security:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("chosen pointer"),
            "{security:?}: {output:?}"
        );
    }
}

#[test]
fn secure_mode_stops_a_forged_free_list_link() {
    // Without secure mode the forged link is followed: malloc hands out the attacker's address.
    let normal = run_secure("attack", Security::Off);
    assert!(
        String::from_utf8_lossy(&normal.stdout).contains("returned the chosen pointer"),
        "{normal:?}"
    );
    assert_secure_aborts("attack", "free-list link in the free block at 0x");
    assert_secure_aborts("attack", "was overwritten");
}

#[test]
fn secure_mode_stops_a_double_free_by_the_owner_and_by_another_thread() {
    assert_secure_aborts("double", "secure mode: double free of 0x");
    assert_secure_aborts("remote-double", "secure mode: double free of 0x");
}

#[test]
fn secure_mode_shuffles_fresh_blocks_and_guards_segments() {
    let in_order = |security: Security| -> u32 {
        let output = run_secure("shuffle", security);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"))
    };
    assert!(
        in_order(Security::Off) >= 60,
        "normal carving is in address order"
    );
    for security in SECURE_WAYS {
        // Four runs interleaved at random: a block follows the last with odds of 1 in 4, so
        // about 16 of 63 do (more than 32 has odds below 1 in 10^6).
        let count = in_order(security);
        assert!(count <= 32, "{security:?}: {count} of 63 in order");
    }
    // Segments, and huge blocks (in their own mappings) after a realloc that kept their bytes.
    for mode in ["guard", "huge-guard"] {
        let normal = run_secure(mode, Security::Off);
        assert!(
            String::from_utf8_lossy(&normal.stdout).contains("no guard page"),
            "{mode}: {normal:?}"
        );
        for security in SECURE_WAYS {
            let secure = run_secure(mode, security);
            assert!(
                String::from_utf8_lossy(&secure.stdout).contains("guard page hit"),
                "{mode}, {security:?}: {secure:?}"
            );
        }
    }
}

/// Runs `interior.c` with `arguments` under `library` (preloaded) with `environment`.
fn run_interior(
    library: &std::path::Path,
    arguments: &[&str],
    environment: &[(&str, &str)],
) -> Output {
    let binary = scratch().join("interior");
    compile(&[source("interior.c")], &binary, None, &[]);
    let mut command = std::process::Command::new(&binary);
    command.args(arguments).env("LD_PRELOAD", library);
    for (name, value) in environment {
        command.env(name, value);
    }
    run_with_timeout(command, 120).0
}

#[test]
fn interior_frees_are_reported_and_never_overlap_blocks() {
    for linkage in BOTH {
        let (stdout, stderr) = build_and_run("interior.c", linkage, &["all"]);
        assert!(stdout.contains("checks passed"), "{stdout}");
        // Every interior pointer printed was reported by free, realloc and usable_size.
        for line in stdout.lines().filter(|line| line.starts_with("interior ")) {
            let address = line.rsplit(' ').next().unwrap();
            for function in ["free", "realloc", "malloc_usable_size"] {
                let report = format!(
                    "tallymalloc: {function}(): invalid pointer {address} (inside tallymalloc's \
                     memory, not the start of a block; ignored)"
                );
                assert!(stderr.contains(&report), "no report {report}:\n{stderr}");
            }
        }
    }
}

#[test]
fn the_issue_snippet_keeps_its_neighbour_in_every_mode() {
    let normal = run_interior(&common::library(), &["one"], &[]);
    let stdout = String::from_utf8_lossy(&normal.stdout);
    assert!(stdout.contains("b intact, survived"), "{stdout}");
    // Secure mode (on the normal library and built in) and TALLYMALLOC_ON_ERROR=abort stop
    // the program at the free, naming the pointer.
    let library = common::library();
    let hardened = common::hardened_library();
    let secure_option = [("TALLYMALLOC_SECURE", "1")];
    let abort_option = [("TALLYMALLOC_ON_ERROR", "abort")];
    let aborting = [
        (&library, &secure_option[..], "aborting: secure mode"),
        (&hardened, &[][..], "aborting: secure mode"),
        (&library, &abort_option[..], "TALLYMALLOC_ON_ERROR=abort"),
    ];
    for (library, environment, why) in aborting {
        let output = run_interior(library, &["one"], environment);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && !stdout.contains("survived"),
            "{environment:?}: {stdout}"
        );
        let address = stdout.lines().next().unwrap().rsplit(' ').next().unwrap();
        assert!(
            stderr.contains(&format!("free(): invalid pointer {address} (inside")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{environment:?}: {stderr}");
    }
    // Debug mode names it an interior pointer, with the block it is inside.
    let debug = run_interior(
        &common::library(),
        &["one"],
        &[
            ("TALLYMALLOC_DEBUG", "1"),
            ("TALLYMALLOC_ON_ERROR", "report"),
        ],
    );
    let stdout = String::from_utf8_lossy(&debug.stdout);
    let stderr = String::from_utf8_lossy(&debug.stderr);
    assert!(stdout.contains("b intact, survived"), "{stdout}\n{stderr}");
    assert!(stderr.to_lowercase().contains("interior"), "{stderr}");
}

#[test]
fn alignments_up_to_a_gibibyte_in_every_mode() {
    for linkage in BOTH {
        let (stdout, stderr) = build_and_run("big_alignments.c", linkage, &[]);
        assert!(stdout.contains("checks passed"), "{stdout}");
        assert!(stderr.is_empty(), "{stderr}");
    }
    let hardened = common::hardened_library();
    let library = common::library();
    let secure = [("TALLYMALLOC_SECURE", "1")];
    // Debug mode's quarantine keeps freed blocks resident, poisoned: none, for the RSS check.
    let debug = [("TALLYMALLOC_DEBUG", "1"), ("TALLYMALLOC_QUARANTINE", "0")];
    for (library, environment) in [
        (&library, &secure[..]),
        (&hardened, &[][..]),
        (&library, &debug[..]),
    ] {
        let binary = scratch().join("big_alignments-Preloaded");
        let mut command = std::process::Command::new(&binary);
        command.env("LD_PRELOAD", library);
        for (name, value) in environment {
            command.env(name, value);
        }
        let (output, _) = run_with_timeout(command, 300);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("checks passed"),
            "{environment:?}: {stdout}\n{stderr}"
        );
    }
}

#[test]
fn the_profiling_api_estimates_known_sites() {
    // The API's symbols come from the library, so the program links it.
    let file = scratch().join("profile-api.txt");
    let path = file.to_string_lossy().into_owned();
    let (stdout, stderr) = build_and_run("profile_api.c", Linkage::Linked, &[path.as_str()]);
    assert!(stdout.contains("profile checks passed"), "{stdout}{stderr}");
}
