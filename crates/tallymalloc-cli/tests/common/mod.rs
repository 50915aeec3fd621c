//! What the command's tests share.

use std::path::PathBuf;

/// Headless Chromium, for the HTML reports.
pub fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .next()
        .expect("headless Chromium is needed: apt-get install chromium (scripts/test does)")
}
