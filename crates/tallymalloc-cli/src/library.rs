//! Where `libtallymalloc.so` is: `TALLYMALLOC_LIB`, else beside the `tallymalloc` binary (as
//! cargo builds them both into `target/release`), else in the build trees above the working
//! directory.

use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "libtallymalloc.so";

/// The library to preload, or a message that says how to get one.
pub fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TALLYMALLOC_LIB") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(absolute(&path))
        } else {
            Err(format!("TALLYMALLOC_LIB={} is not a file", path.display()))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(FILE_NAME)));
    let in_build_tree = std::env::current_dir()
        .ok()
        .map(|d| d.join("target/release").join(FILE_NAME));
    beside
        .into_iter()
        .chain(in_build_tree)
        .find(|p| p.is_file())
        .map(|p| absolute(&p))
        .ok_or_else(|| {
            format!(
                "{FILE_NAME} not found beside this program or in target/release: build it with \
                 `cargo build --release -p tallymalloc-capi`, or point TALLYMALLOC_LIB at it"
            )
        })
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
