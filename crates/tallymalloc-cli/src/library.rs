//! Where `libtallymalloc.so` is: `TALLYMALLOC_LIB`, else beside the `tallymalloc` binary (as
//! cargo builds them both into `target/release`), else in `../lib` from it (as `scripts/install`
//! lays out a prefix), else in the build trees under the working directory. When none has it,
//! the message lists every place tried.

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
    let working = std::env::current_dir().ok();
    let candidates = candidates(executable.as_deref(), working.as_deref());
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => Ok(absolute(found)),
        None => {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Err(format!(
                "{FILE_NAME} not found; tried TALLYMALLOC_LIB (unset), {}. Install with \
                 `scripts/install --prefix DIR` (the library goes to DIR/lib, beside DIR/bin), \
                 build it with `cargo build --release -p tallymalloc-capi`, or point \
                 TALLYMALLOC_LIB at it",
                tried.join(", ")
            ))
        }
    }
}

/// The places looked in, in order, for a program at `executable` run from `working`.
fn candidates(executable: Option<&Path>, working: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(directory) = executable.and_then(Path::parent) {
        candidates.push(directory.join(FILE_NAME));
        if let Some(prefix) = directory.parent() {
            candidates.push(prefix.join("lib").join(FILE_NAME));
        }
    }
    if let Some(working) = working {
        candidates.push(working.join("target/release").join(FILE_NAME));
    }
    candidates
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_the_program_then_in_its_prefix_then_in_the_build_tree() {
        let found = candidates(
            Some(Path::new("/opt/tm/bin/tallymalloc")),
            Some(Path::new("/home/me/src")),
        );
        assert_eq!(
            found,
            [
                PathBuf::from("/opt/tm/bin/libtallymalloc.so"),
                PathBuf::from("/opt/tm/lib/libtallymalloc.so"),
                PathBuf::from("/home/me/src/target/release/libtallymalloc.so"),
            ]
        );
        assert!(candidates(None, None).is_empty());
    }
}
