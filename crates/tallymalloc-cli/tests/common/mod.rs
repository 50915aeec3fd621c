//! What the command's tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Headless Chromium, for the HTML reports.
pub fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .next()
        .expect("headless Chromium is needed: apt-get install chromium (scripts/test does)")
}

/// `tests/c/NAME.c`, compiled with debug information into `directory`.
pub fn compile_c(name: &str, directory: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let binary = directory.join(name);
    let status = Command::new("cc")
        .args(["-O1", "-g", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("cc (install gcc)");
    assert!(status.success(), "cc {}", source.display());
    binary
}
