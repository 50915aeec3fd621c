//! The workloads: what each one is, how it is built, and how hard it is run.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Workload {
    pub name: &'static str,
    /// C or C++ source in `workloads/`, or `None` for the Rust `compiler` binary.
    pub source: Option<&'static str>,
    /// Arguments after the scale and thread count (a mode).
    pub mode: Option<&'static str>,
    /// Threads for this row whatever `--threads` says: the oversubscribed rows (more threads
    /// than cores, so that a thread holding a lock is preempted now and then). Their scale
    /// keeps the total work of the row they repeat at four threads.
    pub threads: Option<usize>,
    /// A binary beside this one that links tallymalloc itself (as Rust's global allocator):
    /// tallymalloc's column runs it instead of preloading the library. Such a row repeats
    /// another workload, so it is shown but left out of the geometric means.
    pub native_tallymalloc: Option<&'static str>,
    /// Scale for about half a second on glibc on a 2-core machine (glibc-simple: for a tenth
    /// of a second on the fast allocators, glibc being 25 times slower there); `--quick`
    /// divides it by 4.
    pub scale: u64,
    pub about: &'static str,
}

pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "bignum",
        source: Some("bignum.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 2000,
        about: "many small short-lived objects: bignum arithmetic (cfrac style)",
    },
    Workload {
        name: "sets",
        source: Some("sets.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 25,
        about: "set operations on cube lists (espresso style)",
    },
    Workload {
        name: "tree",
        source: Some("tree.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 60,
        about: "a quadtree built, walked and freed every step (Barnes-Hut style)",
    },
    Workload {
        name: "larson",
        source: Some("larson.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 250,
        about: "server-like: generations of threads replace random blocks in inherited tables",
    },
    Workload {
        name: "xmalloc",
        source: Some("xmalloc.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 30,
        about: "producer -> consumer: every free is a cross-thread free",
    },
    Workload {
        name: "cache-thrash",
        source: Some("cache.c"),
        mode: Some("thrash"),
        threads: None,
        native_tallymalloc: None,
        scale: 200,
        about: "false sharing: threads write small objects they allocate",
    },
    Workload {
        name: "cache-scratch",
        source: Some("cache.c"),
        mode: Some("scratch"),
        threads: None,
        native_tallymalloc: None,
        scale: 120,
        about: "passive false sharing: first object comes from another thread",
    },
    Workload {
        name: "large",
        source: Some("large.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 30,
        about: "64 KiB to 16 MiB blocks grown with realloc",
    },
    Workload {
        name: "mstress",
        source: Some("mstress.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 25,
        about: "mixed sizes with realloc and hand-offs across threads (mstress/rptest style)",
    },
    Workload {
        name: "churn",
        source: Some("churn.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 80,
        about: "threads created and ending constantly",
    },
    Workload {
        name: "glibc-simple",
        source: Some("glibc_simple.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 16,
        about: "glibc bench-malloc-simple: batches of one size, one thread",
    },
    Workload {
        name: "glibc-thread",
        source: Some("glibc_thread.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 40,
        about: "glibc bench-malloc-thread: random sizes, every thread",
    },
    Workload {
        name: "alloc-test",
        source: Some("alloc_test.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 25,
        about: "alloc-test style: one thread, 8192 slots of mixed sizes allocated, reallocated and freed",
    },
    Workload {
        name: "large-random",
        source: Some("large_random.c"),
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 30,
        about: "malloc-large style: 20 slots of random blocks from 64 KiB to 32 MiB, each filled",
    },
    Workload {
        name: "larson-8t",
        source: Some("larson.c"),
        mode: None,
        threads: Some(8),
        native_tallymalloc: None,
        scale: 125,
        about: "larson with 8 threads (oversubscribed)",
    },
    Workload {
        name: "larson-32t",
        source: Some("larson.c"),
        mode: None,
        threads: Some(32),
        native_tallymalloc: None,
        scale: 32,
        about: "larson with 32 threads (oversubscribed)",
    },
    Workload {
        name: "mstress-8t",
        source: Some("mstress.c"),
        mode: None,
        threads: Some(8),
        native_tallymalloc: None,
        scale: 12,
        about: "mstress with 8 threads (oversubscribed)",
    },
    Workload {
        name: "mstress-32t",
        source: Some("mstress.c"),
        mode: None,
        threads: Some(32),
        native_tallymalloc: None,
        scale: 3,
        about: "mstress with 32 threads (oversubscribed)",
    },
    Workload {
        name: "glibc-thread-32t",
        source: Some("glibc_thread.c"),
        mode: None,
        threads: Some(32),
        native_tallymalloc: None,
        scale: 5,
        about: "glibc bench-malloc-thread with 32 threads (oversubscribed)",
    },
    Workload {
        name: "compiler",
        source: None,
        mode: None,
        threads: None,
        native_tallymalloc: None,
        scale: 40,
        about:
            "Rust: generate, tokenize, parse, fold and print a program (String, Vec, HashMap, Box)",
    },
    Workload {
        name: "compiler-global",
        source: None,
        mode: None,
        threads: None,
        native_tallymalloc: Some("compiler-tallymalloc"),
        scale: 40,
        about: "the compiler workload with tallymalloc as #[global_allocator] in its column \
                (the others preload their allocator); not in the geometric means",
    },
];

pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

impl Workload {
    pub fn scale_for(&self, quick: bool) -> u64 {
        if quick {
            (self.scale / 4).max(1)
        } else {
            self.scale
        }
    }

    /// The arguments after the program: scale, threads, mode.
    pub fn arguments(&self, quick: bool, threads: usize) -> Vec<String> {
        let threads = self.threads.unwrap_or(threads);
        let mut arguments = vec![self.scale_for(quick).to_string(), threads.to_string()];
        arguments.extend(self.mode.map(str::to_owned));
        arguments
    }
}

fn workload_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
}

/// Compiles every C workload into `directory` (once per source); returns the program for each
/// workload. The Rust workload is the `compiler` binary beside this one.
pub fn build(directory: &Path, binaries: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let mut programs = Vec::new();
    for workload in WORKLOADS {
        let Some(source) = workload.source else {
            if let Some(native) = workload.native_tallymalloc {
                let binary = binaries.join(native);
                if !binary.exists() {
                    return Err(format!(
                        "{} is missing: build it with `cargo build --release -p tallymalloc-bench`",
                        binary.display()
                    ));
                }
            }
            let compiler = binaries.join("compiler");
            if !compiler.exists() {
                return Err(format!(
                    "{} is missing: build it with `cargo build --release -p tallymalloc-bench`",
                    compiler.display()
                ));
            }
            programs.push(compiler);
            continue;
        };
        let output = directory.join(source.trim_end_matches(".c").trim_end_matches(".cpp"));
        if !programs.contains(&output) {
            compile_c(&workload_sources().join(source), &output)?;
        }
        programs.push(output);
    }
    Ok(programs)
}

/// Compiles the C program `source` into `output` (`-O2 -g`, with pthreads and libm). It is
/// built under a name of its own, then renamed into place: another bench run (the tests start
/// several at once) may be running the previous binary meanwhile.
pub fn compile_c(source: &Path, output: &Path) -> Result<(), String> {
    compile_c_with(source, output, &[])
}

/// [`compile_c`] with `extra` flags for the compiler.
pub fn compile_c_with(source: &Path, output: &Path, extra: &[&str]) -> Result<(), String> {
    let building = output.with_extension(format!("building-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-g", "-o"])
        .arg(&building)
        .arg(source)
        .args(extra)
        .args(["-lpthread", "-lm"])
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&building);
        return Err(format!("compiling {} failed", source.display()));
    }
    std::fs::rename(&building, output).map_err(|e| format!("{}: {e}", output.display()))
}
