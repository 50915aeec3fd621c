//! Where `libtallymalloc.so` is: `TALLYMALLOC_LIB`, else beside the `tallymalloc` binary (as
//! cargo builds them both into `target/release`), else in `../lib` from it (as `scripts/install`
//! lays out a prefix), else the copy the command carries (`build.rs`), written once to the
//! user's cache directory, else in the build trees under the working directory. When none has
//! it, the message lists every place tried.

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "libtallymalloc.so";

/// The library to preload, or a message that says where it was looked for and how to get one.
pub fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TALLYMALLOC_LIB") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(absolute(&path))
        } else {
            Err(format!("TALLYMALLOC_LIB={} is not a file", path.display()))
        };
    }
    let executable = std::env::current_exe().ok();
    let (installed, build_tree) = candidates(executable.as_deref());
    if let Some(found) = installed.iter().find(|p| p.is_file()) {
        return Ok(absolute(found));
    }
    let mut tried: Vec<String> = installed.iter().map(|p| p.display().to_string()).collect();
    match write_carried() {
        Ok(path) => return Ok(path),
        Err(why) => tried.push(why),
    }
    if let Some(path) = std::env::current_dir()
        .ok()
        .map(|working| working.join(build_tree))
    {
        if path.is_file() {
            return Ok(absolute(&path));
        }
        tried.push(path.display().to_string());
    }
    Err(format!(
        "{FILE_NAME} not found; tried TALLYMALLOC_LIB (unset), {}. Install with \
         `scripts/install --prefix DIR` (the library goes to DIR/lib, beside DIR/bin), build it \
         with `cargo build --release -p tallymalloc-capi`, or point TALLYMALLOC_LIB at it",
        tried.join(", ")
    ))
}

/// The library built with this command (`build.rs`); empty when it was built without one.
static CARRIED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtallymalloc.so"));
/// A name for `CARRIED`'s bytes, so a cached copy is never another build's.
const CARRIED_HASH: &str = env!("TALLYMALLOC_CARRIED_HASH");

/// The carried library as a file that can be preloaded: `$XDG_CACHE_HOME/tallymalloc/` (else
/// `~/.cache/tallymalloc/`), written on first use, under a name that changes with its bytes.
/// Err says what was tried.
fn write_carried() -> Result<PathBuf, String> {
    if CARRIED.is_empty() {
        return Err("the command's own copy (it was built without one)".into());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or("the command's own copy (neither XDG_CACHE_HOME nor HOME is set)")?
        .join("tallymalloc");
    let path = cache.join(format!("libtallymalloc-{CARRIED_HASH}.so"));
    let unwritable = |error: std::io::Error| {
        format!(
            "the command's own copy (could not write {}: {error})",
            path.display()
        )
    };
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == CARRIED.len() as u64) {
        return Ok(path);
    }
    std::fs::create_dir_all(&cache).map_err(unwritable)?;
    // Written aside, then renamed: a process that finds the name finds the whole library, even
    // when two commands start at once.
    let partial = cache.join(format!(
        "libtallymalloc-{CARRIED_HASH}.so.{}",
        std::process::id()
    ));
    std::fs::write(&partial, CARRIED).map_err(unwritable)?;
    std::fs::rename(&partial, &path).map_err(|error| {
        let _ = std::fs::remove_file(&partial);
        unwritable(error)
    })?;
    Ok(path)
}

/// The installed places looked in, in order, for a program at `executable`, and the build
/// tree's library, relative to the working directory, looked in last.
fn candidates(executable: Option<&Path>) -> (Vec<PathBuf>, PathBuf) {
    let mut installed = Vec::new();
    if let Some(directory) = executable.and_then(Path::parent) {
        installed.push(directory.join(FILE_NAME));
        if let Some(prefix) = directory.parent() {
            installed.push(prefix.join("lib").join(FILE_NAME));
        }
    }
    (installed, Path::new("target/release").join(FILE_NAME))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_the_program_then_in_its_prefix_then_in_the_build_tree() {
        let (installed, build_tree) = candidates(Some(Path::new("/opt/tm/bin/tallymalloc")));
        assert_eq!(
            installed,
            [
                PathBuf::from("/opt/tm/bin/libtallymalloc.so"),
                PathBuf::from("/opt/tm/lib/libtallymalloc.so"),
            ]
        );
        assert_eq!(
            build_tree,
            PathBuf::from("target/release/libtallymalloc.so")
        );
        assert!(candidates(None).0.is_empty());
    }

    #[test]
    fn carries_an_elf_library() {
        // Built in this workspace, the command carries the C library (build.rs).
        assert_eq!(&CARRIED[..4], b"\x7fELF");
        assert_eq!(CARRIED_HASH.len(), 16);
    }
}
