//! Upstream allocators, built here as preload libraries from the C and C++ sources that
//! crates.io's -sys packages bundle: mimalloc 3 and 2 (`libmimalloc-sys`), snmalloc
//! (`snmalloc-sys`) and rpmalloc (`rpmalloc-sys`). The versions are pinned by `peers/Cargo.toml`
//! and its lock file; `cargo fetch` brings the sources (from the package registry only) and
//! `cargo metadata` says where they are. Each library is compiled once into `peers/` beside
//! the bench binary, with the flags its own release build uses for a shared library that
//! replaces `malloc`, and compiled again only when its sources or flags change.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One upstream allocator: where its sources are in its package, and how to compile them.
pub struct Upstream {
    pub name: &'static str,
    /// The crates.io package bundling the sources.
    package: &'static str,
    /// The compiler (`cc` or `c++`).
    compiler: &'static str,
    /// Source files, relative to the package.
    sources: &'static [&'static str],
    /// Include directories, relative to the package.
    includes: &'static [&'static str],
    flags: &'static [&'static str],
    /// Whether it starts under valgrind (snmalloc does not), so callgrind can count it.
    pub runs_under_valgrind: bool,
}

/// Flags every build shares: optimised, assertions off, position-independent, initial-exec
/// TLS (what each project's CMake picks for a preloaded library: it is loaded at start-up).
const COMMON: &[&str] = &[
    "-O3",
    "-DNDEBUG",
    "-fPIC",
    "-shared",
    "-ftls-model=initial-exec",
];

/// mimalloc's CMake for `MI_OVERRIDE=ON`: hidden symbols but the exported API, and no
/// builtin malloc (the compiler must not turn its calls into its own).
const MIMALLOC_FLAGS: &[&str] = &[
    "-DMI_MALLOC_OVERRIDE",
    "-fvisibility=hidden",
    "-fno-builtin-malloc",
    "-lpthread",
];

pub const UPSTREAM: &[Upstream] = &[
    Upstream {
        name: "mimalloc3",
        package: "libmimalloc-sys",
        compiler: "cc",
        sources: &["c_src/mimalloc/v3/src/static.c"],
        includes: &["c_src/mimalloc/v3/include"],
        flags: MIMALLOC_FLAGS,
        runs_under_valgrind: true,
    },
    Upstream {
        name: "mimalloc2",
        package: "libmimalloc-sys",
        compiler: "cc",
        sources: &["c_src/mimalloc/v2/src/static.c"],
        includes: &["c_src/mimalloc/v2/include"],
        flags: MIMALLOC_FLAGS,
        runs_under_valgrind: true,
    },
    Upstream {
        // snmalloc's CMake target `snmallocshim` (malloc.cc and new.cc), on Linux.
        name: "snmalloc",
        package: "snmalloc-sys",
        compiler: "c++",
        sources: &[
            "upstream/src/snmalloc/override/malloc.cc",
            "upstream/src/snmalloc/override/new.cc",
        ],
        includes: &["upstream/src"],
        flags: &[
            "-std=c++20",
            "-fomit-frame-pointer",
            "-fvisibility=hidden",
            "-DSNMALLOC_EXPORT=__attribute__((visibility(\"default\")))",
            "-DSNMALLOC_USE_CXX11_DESTRUCTORS",
            "-DSNMALLOC_USE_WAIT_ON_ADDRESS=1",
            "-DSNMALLOC_CHECK_LOADS=false",
            "-DSNMALLOC_PAGEID=false",
            "-DSNMALLOC_HAS_LINUX_FUTEX_H",
            "-DSNMALLOC_HAS_LINUX_RANDOM_H",
            "-DSNMALLOC_PLATFORM_HAS_GETENTROPY",
            "-mcx16",
            "-mprfchw",
            "-ffunction-sections",
            "-static-libstdc++",
        ],
        runs_under_valgrind: false,
    },
    Upstream {
        // rpmalloc.c includes malloc.c, the overriding entry points, when asked to.
        name: "rpmalloc",
        package: "rpmalloc-sys",
        compiler: "cc",
        sources: &["rpmalloc/rpmalloc/rpmalloc.c"],
        includes: &[],
        flags: &[
            "-D_GNU_SOURCE",
            "-DENABLE_OVERRIDE=1",
            "-DENABLE_PRELOAD=1",
            "-Wno-attributes",
            "-lpthread",
        ],
        runs_under_valgrind: true,
    },
];

pub fn find(name: &str) -> Option<&'static Upstream> {
    UPSTREAM.iter().find(|u| u.name == name)
}

/// The manifest naming the packages (and so their versions).
fn peers_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/Cargo.toml")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Where each of the peers' packages is unpacked, by package name, after fetching them.
fn package_directories() -> Result<Vec<(String, PathBuf)>, String> {
    let manifest = peers_manifest();
    let fetched = cargo()
        .args(["fetch", "--quiet", "--locked", "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !fetched.success() {
        return Err(format!(
            "cargo fetch --manifest-path {} failed",
            manifest.display()
        ));
    }
    let output = cargo()
        .args([
            "metadata",
            "--offline",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    Ok(packages
        .iter()
        .filter_map(|package| {
            let name = package["name"].as_str()?.to_owned();
            let manifest = Path::new(package["manifest_path"].as_str()?);
            Some((name, manifest.parent()?.to_path_buf()))
        })
        .collect())
}

impl Upstream {
    /// The compiler's command line, but for the output file.
    fn command_line(&self, package: &Path) -> Vec<String> {
        let mut line: Vec<String> = COMMON.iter().map(|f| f.to_string()).collect();
        for include in self.includes {
            line.push(format!("-I{}", package.join(include).display()));
        }
        for source in self.sources {
            line.push(package.join(source).display().to_string());
        }
        line.extend(self.flags.iter().map(|f| f.to_string()));
        line
    }
}

/// The preload library of each of `wanted`, by name, compiled into `directory` if it is not
/// there yet (or was compiled from other sources or flags). `Err` says what failed.
pub fn build(
    wanted: &[&Upstream],
    directory: &Path,
) -> Result<Vec<(&'static str, PathBuf)>, String> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let packages = package_directories()?;
    let mut libraries = Vec::new();
    for upstream in wanted {
        let package = packages
            .iter()
            .find(|(name, _)| name == upstream.package)
            .map(|(_, directory)| directory)
            .ok_or_else(|| format!("{} was not fetched", upstream.package))?;
        let library = directory.join(format!("lib{}.so", upstream.name));
        let line = upstream.command_line(package);
        // The command line names the package's versioned directory, so it changes with the
        // sources: a library built from the same line is the one wanted.
        let recipe = format!("{} {}\n", upstream.compiler, line.join(" "));
        let recipe_file = library.with_extension("so.recipe");
        let built = std::fs::read_to_string(&recipe_file).is_ok_and(|r| r == recipe);
        if !(built && library.exists()) {
            eprint!(
                "\r\x1b[Kbuilding {} from {}",
                upstream.name,
                package.display()
            );
            let building = library.with_extension(format!("building-{}", std::process::id()));
            let status = Command::new(upstream.compiler)
                .args(&line)
                .arg("-o")
                .arg(&building)
                .status()
                .map_err(|e| format!("cannot run {}: {e}", upstream.compiler))?;
            if !status.success() {
                let _ = std::fs::remove_file(&building);
                return Err(format!("compiling {} failed", upstream.name));
            }
            std::fs::rename(&building, &library)
                .map_err(|e| format!("{}: {e}", library.display()))?;
            std::fs::write(&recipe_file, recipe)
                .map_err(|e| format!("{}: {e}", recipe_file.display()))?;
            eprint!("\r\x1b[K");
        }
        libraries.push((upstream.name, library));
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_names_sources_that_its_package_bundles() {
        let packages = package_directories().expect("fetch the peers' sources");
        for upstream in UPSTREAM {
            let (_, directory) = packages
                .iter()
                .find(|(name, _)| name == upstream.package)
                .unwrap_or_else(|| panic!("{} is not fetched", upstream.package));
            for file in upstream.sources.iter().chain(upstream.includes) {
                assert!(directory.join(file).exists(), "{}: {file}", upstream.name);
            }
        }
    }
}
