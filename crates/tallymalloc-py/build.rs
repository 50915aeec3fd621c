//! Compiles `src/frames.c`, the Python frame walker of the sampled profiles, against the headers
//! of the interpreter this extension is built for (maturin names it in `PYO3_PYTHON`): from
//! CPython 3.11 it reads the interpreter's internal frame structure, which only that version's
//! headers describe.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/frames.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (set PYO3_PYTHON to the interpreter)"));
    assert!(
        output.status.success(),
        "{python} could not name its include directory"
    );
    let include = String::from_utf8(output.stdout).expect("a UTF-8 path");
    cc::Build::new()
        .file("src/frames.c")
        .include(include.trim())
        .flag("-fvisibility=hidden")
        .warnings(true)
        .compile("tallymalloc_frames");
}
