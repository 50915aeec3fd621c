//! The stack-capture micro benchmark (`--capture`): `workloads/capture.c`, built with and
//! without frame pointers, times a 24-frame capture by tallymalloc's unwinder (`tm_backtrace`,
//! what debug mode captures with) and by glibc's `backtrace` (libgcc's unwinder), under the
//! preloaded library. Medians of the runs; each run reports its best of five rounds.

use crate::measure::median;
use std::path::Path;
use std::process::Command;

/// The two builds: a name and the compiler flag.
const BUILDS: [(&str, &str); 2] = [
    ("with frame pointers", "-fno-omit-frame-pointer"),
    ("without frame pointers", "-fomit-frame-pointer"),
];

/// Builds and runs the benchmark `reps` times per build; prints the medians.
pub fn run(library: &Path, directory: &Path, reps: usize, quick: bool) -> Result<(), String> {
    std::fs::create_dir_all(directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/capture.c");
    let rounds = if quick { "50000" } else { "200000" };
    println!("ns per 24-frame stack capture (median of {reps} runs, each the best of 5 rounds)");
    println!(
        "{:<24} {:>14} {:>16}",
        "build", "tm_backtrace", "glibc backtrace"
    );
    for (name, flag) in BUILDS {
        let program = directory.join(format!("capture{flag}"));
        crate::workloads::compile_c_with(&source, &program, &[flag, "-ldl"])?;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..reps {
            let output = Command::new(&program)
                .arg(rounds)
                .env("LD_PRELOAD", library)
                .output()
                .map_err(|e| format!("{}: {e}", program.display()))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let fields: Vec<f64> = text
                .split_whitespace()
                .skip(2)
                .filter_map(|field| field.parse().ok())
                .collect();
            if !output.status.success() || fields.len() != 2 {
                return Err(format!(
                    "{}: {}{}",
                    program.display(),
                    text,
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            ours.push(fields[0]);
            theirs.push(fields[1]);
        }
        println!("{name:<24} {:>14.1} {:>16.1}", median(ours), median(theirs));
    }
    Ok(())
}
