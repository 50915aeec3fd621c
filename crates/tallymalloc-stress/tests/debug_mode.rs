//! Debug mode through `#[global_allocator]`: a Rust program's leaked `Box`es are listed by the
//! source line that allocated them.

use std::process::Command;

#[test]
fn leaked_boxes_are_found_by_their_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_leaky"))
        .env("TALLYMALLOC_DEBUG", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let site = stderr
        .find("blocks, ")
        .and_then(|_| stderr.find("7 blocks, 3584 bytes, allocated at:"))
        .unwrap_or_else(|| panic!("no site of 7 leaked boxes:\n{stderr}"));
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/leaky.rs"),
    )
    .unwrap();
    let line = source
        .lines()
        .position(|l| l.contains("leaked below"))
        .unwrap()
        + 1;
    assert!(
        stderr[site..].contains(&format!("leaky.rs:{line}")),
        "the site's stack lacks leaky.rs:{line}:\n{stderr}"
    );
}
