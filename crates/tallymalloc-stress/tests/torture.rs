//! A short torture run (scripts/test runs a two-minute one): it must finish, check every block
//! and find the stats in agreement.

use std::process::Command;

#[test]
fn a_short_torture_run_passes() {
    let output = Command::new(env!("CARGO_BIN_EXE_tallymalloc-stress"))
        .args(["--seconds", "3", "--threads", "6", "--seed", "42"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("every block checked"), "{stdout}");
}

#[test]
fn a_corrupted_block_is_caught() {
    // The checker itself must catch a wrong byte: --corrupt flips one after a few operations.
    let output = Command::new(env!("CARGO_BIN_EXE_tallymalloc-stress"))
        .args([
            "--seconds",
            "1",
            "--threads",
            "2",
            "--corrupt-after",
            "1000",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("holds") && stderr.contains("not 0x"),
        "{stderr}"
    );
}
