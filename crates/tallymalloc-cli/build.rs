//! Builds the C library the command carries, so that `cargo install --path
//! crates/tallymalloc-cli` gives a `tallymalloc` that runs programs from any directory with
//! nothing else installed (`library.rs` writes it out on first use when no installed library is
//! found).
//!
//! The library is built by a second cargo, started in the workspace so that its
//! `.cargo/config.toml` (the initial-exec thread-local model the library needs) applies, into a
//! target directory of its own beside this build's: sharing the outer build's would wait on the
//! lock the outer build holds, and one fixed directory makes every later build a no-op. Outside
//! the workspace (the crate packaged on its own) there is no library to build, and the command
//! carries none.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment the outer cargo gives build scripts that must not reach the inner build: clippy's
/// driver (set for workspace members) would lint instead of build, and the outer build's
/// encoded flags would override the workspace's own configuration.
const OUTER_ONLY: &[&str] = &[
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let carried = out.join("libtallymalloc.so");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest
        .ancestors()
        .nth(2)
        .expect("crates/tallymalloc-cli has two parents");
    let library_crate = workspace.join("crates/tallymalloc-capi");

    if !library_crate.join("Cargo.toml").is_file() {
        return carry_nothing(
            &carried,
            "no crates/tallymalloc-capi beside this crate: the command carries no library and \
             needs an installed one (TALLYMALLOC_LIB, or lib/ beside its bin/)",
        );
    }
    for watched in [
        "crates/tallymalloc/src",
        "crates/tallymalloc/Cargo.toml",
        "crates/tallymalloc-capi/src",
        "crates/tallymalloc-capi/include",
        "crates/tallymalloc-capi/build.rs",
        "crates/tallymalloc-capi/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    if env::var("TARGET").ok() != env::var("HOST").ok() {
        return carry_nothing(&carried, "cross-compiling: the command carries no library");
    }

    let target_directory = inner_target_directory(&out);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--lib",
            "-p",
            "tallymalloc-capi",
            "--target-dir",
        ])
        .arg(&target_directory);
    for variable in OUTER_ONLY {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("could not start cargo to build the C library: {error}"));
    assert!(
        status.success(),
        "building the C library the command carries failed ({status})"
    );

    let built = target_directory.join("release/libtallymalloc.so");
    let bytes = std::fs::read(&built)
        .unwrap_or_else(|error| panic!("could not read {}: {error}", built.display()));
    write(&carried, &bytes);
    // The name it is written out under at run time: a build of different bytes never reuses
    // another's file.
    println!(
        "cargo:rustc-env=TALLYMALLOC_CARRIED_HASH={:016x}",
        fnv1a(&bytes)
    );
}

/// Builds a command that carries no library (`library.rs` then says so), and tells why.
fn carry_nothing(carried: &Path, why: &str) {
    println!("cargo:warning={why}");
    write(carried, &[]);
    println!("cargo:rustc-env=TALLYMALLOC_CARRIED_HASH=none");
}

/// `embedded-library` in this build's target directory (the one holding `release/` or
/// `debug/`), found from OUT_DIR (`<target>/<profile>/build/<crate>-<hash>/out`).
fn inner_target_directory(out: &Path) -> PathBuf {
    let build = out
        .ancestors()
        .find(|directory| directory.file_name().is_some_and(|name| name == "build"))
        .expect("OUT_DIR lies under the profile's build directory");
    let target = build
        .parent()
        .and_then(Path::parent)
        .expect("the build directory lies under <target>/<profile>");
    target.join("embedded-library")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes)
        .unwrap_or_else(|error| panic!("could not write {}: {error}", path.display()));
}

/// FNV-1a, 64 bits: a name for the bytes, not a defence against anyone.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
