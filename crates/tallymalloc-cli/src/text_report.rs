//! The report on stderr: memory by domain, resident memory over the run as a sparkline, the
//! size classes still live as bars, and the misuse found.

use crate::document::StatsDocument;
use std::fmt::Write;

/// Bytes in the largest binary unit that keeps the number at or above 1.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` squeezed into `width` columns (each the column's maximum), drawn with block
/// characters from zero to the largest value.
pub fn sparkline(values: &[u64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let columns = width.min(values.len());
    let top = values.iter().copied().max().unwrap_or(0).max(1);
    (0..columns)
        .map(|column| {
            let start = column * values.len() / columns;
            let end = ((column + 1) * values.len() / columns).max(start + 1);
            let peak = values[start..end].iter().copied().max().unwrap_or(0);
            SPARKS[((peak as u128 * 7 + top as u128 / 2) / top as u128) as usize]
        })
        .collect()
}

/// A bar of `value` out of `top` in `width` columns, with eighths for the last one.
pub fn bar(value: u64, top: u64, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (value as u128 * width as u128 * 8 / top.max(1) as u128) as usize;
    let mut out = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        out.push(EIGHTHS[eighths % 8]);
    }
    if out.is_empty() && value > 0 {
        out.push('▏');
    }
    out
}

fn blocks_word(count: u64) -> &'static str {
    if count == 1 {
        "block"
    } else {
        "blocks"
    }
}

/// The whole report for `document`.
pub fn render(document: &StatsDocument) -> String {
    let mut out = String::new();
    let seconds = |ms: u64| format!("{:.3} s", ms as f64 / 1000.0);
    let _ = writeln!(
        out,
        "{:<14} {:>11} {:>9} {:>13} {:>13} {:>13} {:>10}",
        "domain", "peak", "at", "live at exit", "allocations", "frees", "mismatches"
    );
    for (name, figures) in document.domains_in_order() {
        if figures.allocations == 0 && figures.mismatches == 0 && name != "raw" {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<14} {:>11} {:>9} {:>13} {:>13} {:>13} {:>10}",
            name,
            bytes(figures.peak_bytes),
            seconds(figures.peak_time_ms),
            bytes(figures.live_usable_bytes),
            count(figures.allocations),
            count(figures.frees),
            count(figures.mismatches)
        );
    }
    let process = &document.process;
    let _ = writeln!(
        out,
        "\nresident: peak {}, at exit {}; committed at exit {}; threads: {}; ran {}",
        bytes(document.peak_resident_bytes()),
        bytes(process.resident_bytes),
        bytes(process.committed_bytes),
        process.threads_seen,
        seconds(process.uptime_ms)
    );
    if document.timeline.len() >= 2 {
        let resident: Vec<u64> = document.timeline.iter().map(|s| s.resident_bytes).collect();
        let span = document.timeline.last().map_or(0, |s| s.time_ms);
        let _ = writeln!(
            out,
            "resident over {} ({} samples): {}",
            seconds(span),
            resident.len(),
            sparkline(&resident, 60)
        );
        for (name, _) in document.domains_in_order() {
            let live: Vec<u64> = document
                .timeline
                .iter()
                .map(|s| s.live_bytes.get(name).copied().unwrap_or(0))
                .collect();
            if live.iter().any(|&v| v > 0) {
                let _ = writeln!(
                    out,
                    "{:<28} {}",
                    format!(
                        "live {name}, up to {}:",
                        bytes(live.iter().copied().max().unwrap_or(0))
                    ),
                    sparkline(&live, 60)
                );
            }
        }
    }
    let classes: Vec<_> = document
        .size_classes
        .iter()
        .filter(|c| c.live_blocks > 0)
        .collect();
    if classes.is_empty() && document.huge.live_blocks == 0 {
        let _ = writeln!(out, "\nno block was live at exit");
    } else {
        let _ = writeln!(out, "\nlive at exit by block size (bytes):");
        let top = classes
            .iter()
            .map(|c| c.live_bytes)
            .chain([document.huge.live_bytes])
            .max()
            .unwrap_or(0);
        for class in &classes {
            let _ = writeln!(
                out,
                "{:>10} {:>9} {:<6} {:>10}  {}",
                bytes(class.size),
                count(class.live_blocks),
                blocks_word(class.live_blocks),
                bytes(class.live_bytes),
                bar(class.live_bytes, top, 40)
            );
        }
        if document.huge.live_blocks > 0 {
            let _ = writeln!(
                out,
                "{:>10} {:>9} {:<6} {:>10}  {}",
                "huge",
                count(document.huge.live_blocks),
                blocks_word(document.huge.live_blocks),
                bytes(document.huge.live_bytes),
                bar(document.huge.live_bytes, top, 40)
            );
        }
    }
    let mismatches = document.total_mismatches();
    if mismatches == 0 {
        let _ = writeln!(out, "\nmisuse: no block was freed through another family");
    } else {
        let _ = writeln!(
            out,
            "\nmisuse: {} blocks freed or reallocated through another domain's family (the \
             lines above from tallymalloc name the first of each pair)",
            count(mismatches)
        );
    }
    out
}

/// Sites each part of the profile's report shows, and frames of each.
const PROFILE_SITES: usize = 5;
const PROFILE_FRAMES: usize = 4;

/// The frames a site shows: its innermost, then, if it ran Python, its innermost Python
/// frames (what a Python programmer looks for), else the native frames that follow.
fn shown_frames(site: &crate::profile::Site) -> Vec<&crate::profile::Frame> {
    use crate::profile::FrameKind;
    let python: Vec<_> = site
        .frames
        .iter()
        .skip(1)
        .filter(|f| f.kind == FrameKind::Python)
        .collect();
    let rest = if python.is_empty() {
        site.frames.iter().skip(1).collect()
    } else {
        python
    };
    site.frames
        .first()
        .into_iter()
        .chain(rest.into_iter().take(PROFILE_FRAMES - 1))
        .collect()
}

/// The profile's part of the report: the top sites by bytes allocated and by bytes live at
/// the peak, each with its innermost frames.
pub fn render_profile(profile: &crate::profile::Profile) -> String {
    use crate::profile::Site;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nProfile: {} samples, one per {} allocated on average (estimates, not exact counts)",
        count(profile.samples),
        bytes(profile.sample_bytes)
    );
    let mut part = |heading: String, sites: Vec<&Site>, figure: &dyn Fn(&Site) -> String| {
        let _ = writeln!(out, "{heading}");
        if sites.is_empty() {
            let _ = writeln!(out, "  (no samples)");
        }
        for site in sites.into_iter().take(PROFILE_SITES) {
            let mut frames = shown_frames(site).into_iter();
            let first = frames
                .next()
                .map_or_else(|| "[unknown]".to_owned(), |f| f.describe());
            let _ = writeln!(out, "  {:>30}  {first}", figure(site));
            for frame in frames {
                let _ = writeln!(out, "  {:>30}    <- {}", "", frame.describe());
            }
        }
    };
    part(
        "Top allocation sites by bytes allocated:".to_owned(),
        profile.top_by(|s| s.allocated_bytes),
        &|s| {
            format!(
                "{} in {} allocs",
                bytes(s.allocated_bytes),
                count(s.allocations)
            )
        },
    );
    part(
        format!(
            "Top sites by bytes live at the peak ({} live then):",
            bytes(profile.peak_bytes)
        ),
        profile.top_by(|s| s.peak_bytes),
        &|s| bytes(s.peak_bytes),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(25 << 20), "25.0 MiB");
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(123), "123");
    }

    #[test]
    fn sparklines_and_bars_scale_to_the_largest_value() {
        assert_eq!(sparkline(&[0, 50, 100], 3), "▁▅█");
        assert_eq!(sparkline(&[0, 100, 0, 0], 2), "█▁");
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(bar(10, 10, 4), "████");
        assert_eq!(bar(5, 10, 4), "██");
        assert_eq!(bar(1, 1000, 4), "▏");
        assert_eq!(bar(0, 10, 4), "");
    }
}
