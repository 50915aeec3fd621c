//! `--python`: allocation-heavy Python scripts (`benches/python/`) under CPython's own pymalloc,
//! under tallymalloc installed in CPython's domains (the package's start-up hook, with its
//! bundled library or the preloaded one, as `tallymalloc run` does), and under plain `malloc`
//! (`PYTHONMALLOC=malloc`) from glibc and from Debian's mimalloc. The table and the ratios are
//! the main suite's, with "tallymalloc" compared against each of the others.

use crate::allocators;
use crate::measure;
use crate::report::{Results, WorkloadResults};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The scripts, built into this program so the suite runs from any directory.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "object_churn",
        include_str!("../../../benches/python/object_churn.py"),
    ),
    (
        "json_round_trip",
        include_str!("../../../benches/python/json_round_trip.py"),
    ),
    (
        "pickle_round_trip",
        include_str!("../../../benches/python/pickle_round_trip.py"),
    ),
    (
        "container_growth",
        include_str!("../../../benches/python/container_growth.py"),
    ),
    (
        "text_processing",
        include_str!("../../../benches/python/text_processing.py"),
    ),
];

/// One way of running the interpreter.
struct Setup {
    name: &'static str,
    environment: Vec<(&'static str, PathBuf)>,
}

fn setups(library: &Path, mimalloc: Option<PathBuf>) -> Vec<Setup> {
    let install = ("TALLYMALLOC_PYTHON", PathBuf::from("1"));
    let no_install = ("TALLYMALLOC_PYTHON", PathBuf::from("0"));
    let malloc = ("PYTHONMALLOC", PathBuf::from("malloc"));
    let mut list = vec![
        Setup {
            name: "pymalloc",
            environment: vec![no_install.clone()],
        },
        Setup {
            name: "tallymalloc",
            environment: vec![install.clone()],
        },
        Setup {
            name: "tallymalloc-preloaded",
            environment: vec![install, ("LD_PRELOAD", library.to_path_buf())],
        },
        Setup {
            name: "malloc",
            environment: vec![no_install.clone(), malloc.clone()],
        },
    ];
    if let Some(mimalloc) = mimalloc {
        list.push(Setup {
            name: "mimalloc",
            environment: vec![no_install, malloc, ("LD_PRELOAD", mimalloc)],
        });
    }
    list
}

pub struct Request<'a> {
    pub interpreter: &'a Path,
    pub library: &'a Path,
    pub build_directory: &'a Path,
    pub reps: usize,
    pub quick: bool,
}

/// Runs the Python suite and prints its table; returns the results for `--json`.
pub fn run(request: &Request) -> Result<Results, String> {
    check_interpreter(request.interpreter)?;
    let mimalloc = allocators::resolve(
        &["mimalloc-deb".to_owned()],
        request.library,
        "tallymalloc-bench",
    )?
    .into_iter()
    .find_map(|allocator| allocator.library);
    let setups = setups(request.library, mimalloc);
    let directory = request.build_directory.join("python");
    std::fs::create_dir_all(&directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let mut scripts = Vec::new();
    for (name, text) in SCRIPTS {
        let path = directory.join(format!("{name}.py"));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        scripts.push(path);
    }
    let mut results = Results {
        allocators: setups.iter().map(|setup| setup.name.to_owned()).collect(),
        workloads: SCRIPTS
            .iter()
            .map(|(name, _)| WorkloadResults {
                name: (*name).to_owned(),
                runs: setups.iter().map(|_| Vec::new()).collect(),
                in_means: true,
            })
            .collect(),
        reps: request.reps,
        quick: request.quick,
        threads: 1,
    };
    let mut arguments = vec![scripts[0].display().to_string()];
    if request.quick {
        arguments.push("quick".to_owned());
    }
    for rep in 0..request.reps {
        for (position, script) in scripts.iter().enumerate() {
            arguments[0] = script.display().to_string();
            eprint!(
                "\r\x1b[Krun {}/{}: {:<18}",
                rep + 1,
                request.reps,
                SCRIPTS[position].0
            );
            for index in crate::order::run_order(setups.len(), rep, position) {
                let environment: Vec<(&str, &OsStr)> = setups[index]
                    .environment
                    .iter()
                    .map(|(name, value)| (*name, value.as_os_str()))
                    .collect();
                let run =
                    measure::run_with_environment(request.interpreter, &arguments, &environment)
                        .map_err(|e| {
                            format!("{} under {}: {e}", SCRIPTS[position].0, setups[index].name)
                        })?;
                results.workloads[position].runs[index].push(run);
            }
        }
    }
    eprintln!("\r\x1b[K");
    Ok(results)
}

/// The interpreter must have the tallymalloc package, or two columns would measure nothing.
fn check_interpreter(interpreter: &Path) -> Result<(), String> {
    let probe = Command::new(interpreter)
        .args(["-c", "import tallymalloc"])
        .env("TALLYMALLOC_PYTHON", "0")
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (build it with scripts/build-python)",
                interpreter.display()
            )
        })?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import tallymalloc: build the package with scripts/build-python, or name \
             an interpreter that has it with --python-interpreter\n{}",
            interpreter.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(())
}
