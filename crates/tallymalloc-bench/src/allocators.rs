//! The allocators compared: the system's (glibc), tallymalloc, the upstream allocators built
//! from crates.io's sources (mimalloc 3 and 2, snmalloc, rpmalloc: `upstream.rs`), and Debian's
//! builds of mimalloc (2.0), jemalloc and tcmalloc, each brought in with `LD_PRELOAD`.

use crate::upstream;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Allocator {
    pub name: &'static str,
    /// The library to preload; `None` for the system allocator.
    pub library: Option<PathBuf>,
    /// Environment the runs get besides `LD_PRELOAD` (the options of a tallymalloc mode).
    pub environment: &'static [(&'static str, &'static str)],
}

struct Peer {
    name: &'static str,
    file: &'static str,
    package: &'static str,
}

const PEERS: &[Peer] = &[
    Peer {
        name: "mimalloc-deb",
        file: "libmimalloc.so.2",
        package: "libmimalloc2.0",
    },
    Peer {
        name: "jemalloc",
        file: "libjemalloc.so.2",
        package: "libjemalloc2",
    },
    Peer {
        name: "tcmalloc",
        file: "libtcmalloc_minimal.so.4",
        package: "libtcmalloc-minimal4",
    },
];

pub const ALL: &[&str] = &[
    "system",
    "tallymalloc",
    "mimalloc3",
    "mimalloc2",
    "snmalloc",
    "rpmalloc",
    "mimalloc-deb",
    "jemalloc",
    "tcmalloc",
];

/// What a peer's name used to be, for command lines written before the upstream builds came.
fn current_name(name: &str) -> &str {
    match name {
        "mimalloc" => "mimalloc-deb",
        other => other,
    }
}

/// The allocators of `allocators` that callgrind can count; says on stderr which are left out.
pub fn countable(allocators: &[Allocator]) -> Vec<&Allocator> {
    allocators
        .iter()
        .filter(|allocator| {
            let counts = upstream::find(allocator.name).is_none_or(|u| u.runs_under_valgrind);
            if !counts {
                eprintln!(
                    "{}: left out of the instruction counts (it refuses to start under valgrind; compare it by time)",
                    allocator.name
                );
            }
            counts
        })
        .collect()
}

/// Whether `name` is one of the allocators tallymalloc is measured against (not the system's,
/// and not a build of tallymalloc): the "fastest peer" of a workload is the fastest of these.
pub fn is_peer(name: &str) -> bool {
    PEERS.iter().any(|p| p.name == name) || upstream::find(name).is_some()
}

const LIBRARY_DIRECTORIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
];

fn find_library(file: &str) -> Option<PathBuf> {
    LIBRARY_DIRECTORIES
        .iter()
        .map(|d| Path::new(d).join(file))
        .find(|p| p.exists())
}

/// Installs the missing peers' Debian packages when running as root with apt-get (otherwise
/// says how), and builds the upstream ones into `peers/` beside `tallymalloc`. Returns the
/// allocators to compare, in `wanted` order; a peer that stays missing is left out with a
/// message on stderr. `command` names the program in messages.
pub fn resolve(
    wanted: &[String],
    tallymalloc: &Path,
    command: &str,
) -> Result<Vec<Allocator>, String> {
    let wanted: Vec<String> = wanted.iter().map(|w| current_name(w).to_owned()).collect();
    let upstream_wanted: Vec<&upstream::Upstream> =
        wanted.iter().filter_map(|w| upstream::find(w)).collect();
    let upstream_libraries =
        upstream::build(&upstream_wanted, &tallymalloc.with_file_name("peers")).unwrap_or_else(
            |error| {
                eprintln!("{command}: the upstream allocators are left out: {error}");
                Vec::new()
            },
        );
    let missing: Vec<&Peer> = PEERS
        .iter()
        .filter(|p| wanted.iter().any(|w| w == p.name) && find_library(p.file).is_none())
        .collect();
    if !missing.is_empty() {
        install(&missing, command);
    }
    let mut allocators = Vec::new();
    for name in &wanted {
        match name.as_str() {
            "system" => allocators.push(Allocator {
                name: "system",
                library: None,
                environment: &[],
            }),
            "tallymalloc"
            | "tallymalloc-secure-option"
            | "tallymalloc-debug"
            | "tallymalloc-profile" => {
                if !tallymalloc.exists() {
                    return Err(format!(
                        "{} is missing: build it with `cargo build --release -p tallymalloc-capi`",
                        tallymalloc.display()
                    ));
                }
                // The normal library, or one of its modes: secure (TALLYMALLOC_SECURE=1), which
                // keeps the fast paths free of its checks and so takes slow paths, or debug
                // (TALLYMALLOC_DEBUG=1: headers, guards, quarantine and a stack per block), or
                // profiling at the default rate (TALLYMALLOC_PROFILE=1, the profile written to
                // /dev/null at exit, as `tallymalloc run --profile` writes it to a file).
                let (name, environment): (&'static str, &'static [(&str, &str)]) =
                    match name.as_str() {
                        "tallymalloc-secure-option" => {
                            ("tallymalloc-secure-option", &[("TALLYMALLOC_SECURE", "1")])
                        }
                        "tallymalloc-debug" => ("tallymalloc-debug", &[("TALLYMALLOC_DEBUG", "1")]),
                        "tallymalloc-profile" => (
                            "tallymalloc-profile",
                            &[
                                ("TALLYMALLOC_PROFILE", "1"),
                                ("TALLYMALLOC_PROFILE_FILE", "/dev/null"),
                            ],
                        ),
                        _ => ("tallymalloc", &[]),
                    };
                allocators.push(Allocator {
                    name,
                    library: Some(tallymalloc.into()),
                    environment,
                });
            }
            "tallymalloc-secure" => {
                // The hardened build: secure mode built in, checked on the fast paths.
                let hardened = tallymalloc.with_file_name("libtallymalloc-secure.so");
                if !hardened.exists() {
                    return Err(format!(
                        "{} is missing: build it with scripts/build-secure",
                        hardened.display()
                    ));
                }
                allocators.push(Allocator {
                    name: "tallymalloc-secure",
                    library: Some(hardened),
                    environment: &[],
                });
            }
            custom if custom.contains('=') => {
                // NAME=PATH: another build of a library to preload, such as tallymalloc
                // built without its accounting (scripts/stats-cost).
                let (name, path) = custom.split_once('=').unwrap_or_default();
                if name.is_empty() || !Path::new(path).exists() {
                    return Err(format!(
                        "{custom:?}: expected NAME=PATH to an existing library"
                    ));
                }
                allocators.push(Allocator {
                    name: Box::leak(name.to_owned().into_boxed_str()),
                    library: Some(PathBuf::from(path)),
                    environment: &[],
                });
            }
            upstream if upstream::find(upstream).is_some() => {
                // Left out (with a message) when it could not be built.
                let built = upstream_libraries
                    .iter()
                    .find(|(name, _)| *name == upstream);
                if let Some((name, library)) = built {
                    allocators.push(Allocator {
                        name,
                        library: Some(library.clone()),
                        environment: &[],
                    });
                }
            }
            other => {
                let peer = PEERS.iter().find(|p| p.name == other).ok_or_else(|| {
                    format!(
                        "unknown allocator {other:?} (known: {}, tallymalloc-secure, tallymalloc-secure-option, tallymalloc-debug, tallymalloc-profile, NAME=PATH)",
                        ALL.join(", ")
                    )
                })?;
                match find_library(peer.file) {
                    Some(library) => allocators.push(Allocator {
                        name: peer.name,
                        library: Some(library),
                        environment: &[],
                    }),
                    None => eprintln!(
                        "{command}: {} is not installed (apt-get install {}); left out",
                        peer.name, peer.package
                    ),
                }
            }
        }
    }
    Ok(allocators)
}

fn install(missing: &[&Peer], command: &str) {
    let packages: Vec<&str> = missing.iter().map(|p| p.package).collect();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!(
            "{command}: to compare with them, install {}",
            packages.join(" ")
        );
        return;
    }
    eprintln!("{command}: installing {}", packages.join(" "));
    let quiet = |command: &mut Command| command.env("DEBIAN_FRONTEND", "noninteractive").status();
    let updated = quiet(Command::new("apt-get").args(["update", "-qq"]));
    let installed = quiet(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&packages),
    );
    if !matches!((updated, installed), (Ok(a), Ok(b)) if a.success() && b.success()) {
        eprintln!(
            "{command}: apt-get could not install {}",
            packages.join(" ")
        );
    }
}
