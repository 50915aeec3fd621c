//! Helpers for the tests that drive libtallymalloc through real programs: finding the built
//! library, compiling C and C++ sources, and running programs with it preloaded or linked,
//! under a timeout.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory holding `libtallymalloc.so`: the profile directory of this test binary
/// (`target/<profile>/deps/<test>` -> `target/<profile>`).
pub fn library_directory() -> PathBuf {
    let executable = std::env::current_exe().expect("current_exe");
    let directory = executable
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    assert!(
        directory.join("libtallymalloc.so").exists(),
        "libtallymalloc.so is not built in {}: run `cargo build --release -p tallymalloc-capi`",
        directory.display()
    );
    directory.to_path_buf()
}

pub fn library() -> PathBuf {
    library_directory().join("libtallymalloc.so")
}

/// The hardened build (secure mode built in), which `scripts/build-secure` puts beside it.
#[allow(dead_code)] // Not every test binary runs it.
pub fn hardened_library() -> PathBuf {
    let path = library_directory().join("libtallymalloc-secure.so");
    assert!(
        path.exists(),
        "{} is not built: run scripts/build-secure",
        path.display()
    );
    path
}

/// A directory where the library has the names a linked program needs, as an install gives it:
/// `libtallymalloc.so` to link with, and its soname, which the program records and loads.
pub fn link_directory() -> &'static Path {
    static DIRECTORY: OnceLock<PathBuf> = OnceLock::new();
    DIRECTORY.get_or_init(|| {
        let directory = scratch().join("lib");
        std::fs::create_dir_all(&directory).unwrap();
        for name in ["libtallymalloc.so", env!("LIBTALLYMALLOC_SONAME")] {
            let link = directory.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(library(), &link).unwrap();
        }
        directory
    })
}

/// A scratch directory for this test binary's build products.
pub fn scratch() -> &'static Path {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let name = std::env::current_exe()
            .unwrap()
            .file_name()
            .unwrap()
            .to_owned();
        let directory = std::env::temp_dir().join("tallymalloc-tests").join(name);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    })
}

pub fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(name)
}

/// How a test program reaches tallymalloc.
#[derive(Clone, Copy, Debug)]
pub enum Linkage {
    /// Linked against libtallymalloc.so (with an rpath to it).
    Linked,
    /// Built plain and run with `LD_PRELOAD=libtallymalloc.so`.
    Preloaded,
}

/// Compiles `source` (C, or C++ when it ends in `.cpp`) into `output` with `extra` flags.
pub fn compile(sources: &[PathBuf], output: &Path, linkage: Option<Linkage>, extra: &[&str]) {
    let cpp = sources
        .iter()
        .any(|s| s.extension().is_some_and(|e| e == "cpp"));
    let compiler = if cpp { "c++" } else { "cc" };
    let mut command = Command::new(compiler);
    command.args([
        "-O2",
        "-g",
        "-Wall",
        "-Wno-alloc-size-larger-than",
        "-Wno-free-nonheap-object",
    ]);
    command
        .arg("-I")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"));
    if cpp {
        command.arg("-std=c++17");
    }
    command.args(sources).arg("-o").arg(output).args(extra);
    if let Some(Linkage::Linked) = linkage {
        let directory = link_directory();
        command.arg("-L").arg(directory).arg("-ltallymalloc");
        command.arg(format!("-Wl,-rpath,{}", directory.display()));
    }
    command.args(["-lpthread", "-ldl"]);
    let result = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        result.status.success(),
        "compiling {:?} failed:\n{}",
        sources,
        String::from_utf8_lossy(&result.stderr)
    );
}

/// A command that runs `program` with tallymalloc preloaded if asked. Run it with
/// [`run_ok`] or [`run_with_timeout`]; the timeout is enforced here, not by a wrapper program,
/// so that only `program` loads the library.
pub fn command_with(linkage: Option<Linkage>, program: &Path) -> Command {
    let mut command = Command::new(program);
    if let Some(Linkage::Preloaded) = linkage {
        command.env("LD_PRELOAD", library());
    }
    command
}

/// Runs `command`, killing it after `seconds`; returns its output and whether it timed out.
pub fn run_with_timeout(mut command: Command, seconds: u64) -> (Output, bool) {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).ok();
        bytes
    });
    let err_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).ok();
        bytes
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            child.kill().ok();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    (output, timed_out)
}

/// Runs a command under a 5-minute timeout, asserting that it exits 0; returns its output.
pub fn run_ok(command: Command, what: &str) -> Output {
    let (output, timed_out) = run_with_timeout(command, 300);
    assert!(
        output.status.success() && !timed_out,
        "{what} failed ({}{})\nstdout:\n{}\nstderr:\n{}",
        output.status,
        if timed_out { ", timed out" } else { "" },
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
