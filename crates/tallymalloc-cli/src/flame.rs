//! Folded stacks (`outermost;...;innermost VALUE`, one line per stack, as `flamegraph.pl` and
//! `inferno` read them) and flame graphs drawn from them by `inferno`, as SVG to embed.

use crate::profile::{Profile, Site};

/// Which of a site's figures a flame graph weighs it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    AllocatedBytes,
    PeakBytes,
}

impl Measure {
    fn of(self, site: &Site) -> u64 {
        match self {
            Measure::AllocatedBytes => site.allocated_bytes,
            Measure::PeakBytes => site.peak_bytes,
        }
    }
}

/// One folded line per site with a nonzero figure; a semicolon in a name becomes a colon, so
/// that it cannot split a frame in two.
pub fn folded(profile: &Profile, measure: Measure) -> String {
    let mut text = String::new();
    for site in &profile.sites {
        let value = measure.of(site);
        if value == 0 {
            continue;
        }
        let names: Vec<String> = site
            .frames
            .iter()
            .rev()
            .map(|frame| frame.describe().replace(';', ":"))
            .collect();
        let stack = if names.is_empty() {
            "[unknown]".to_owned()
        } else {
            names.join(";")
        };
        text.push_str(&format!("{stack} {value}\n"));
    }
    text
}

/// A flame graph of the profile by `measure`, as an SVG document; None if no site has any.
pub fn svg(profile: &Profile, measure: Measure, title: &str) -> Option<String> {
    let folded = folded(profile, measure);
    if folded.is_empty() {
        return None;
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "bytes".to_owned();
    options.name_type = "Function:".to_owned();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg).ok()?;
    String::from_utf8(svg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Frame, FrameKind};

    fn frame(function: &str) -> Frame {
        Frame {
            function: function.to_owned(),
            file: "f.c".to_owned(),
            line: 3,
            kind: FrameKind::Native,
        }
    }

    fn profile() -> Profile {
        let site = |frames: Vec<Frame>, allocated, peak| Site {
            frames,
            allocated_bytes: allocated,
            allocations: 1,
            peak_bytes: peak,
            live_bytes: 0,
            peak_blocks: 0,
            live_blocks: 0,
        };
        Profile {
            sample_bytes: 512,
            samples: 2,
            peak_bytes: 70,
            sites: vec![
                site(vec![frame("leaf"), frame("main")], 100, 70),
                site(vec![frame("odd;name"), frame("main")], 50, 0),
            ],
        }
    }

    #[test]
    fn folded_lines_run_outermost_first() {
        let text = folded(&profile(), Measure::AllocatedBytes);
        assert_eq!(
            text,
            "main (f.c:3);leaf (f.c:3) 100\nmain (f.c:3);odd:name (f.c:3) 50\n"
        );
        assert_eq!(
            folded(&profile(), Measure::PeakBytes),
            "main (f.c:3);leaf (f.c:3) 70\n"
        );
    }

    #[test]
    fn the_flame_graph_names_the_functions() {
        let svg = svg(&profile(), Measure::AllocatedBytes, "allocated").unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
        assert!(svg.contains("leaf (f.c:3)") && svg.contains("allocated"));
    }
}
