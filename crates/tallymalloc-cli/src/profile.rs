//! Profiles: the raw file a program writes at exit (`TALLYMALLOC_PROFILE_FILE`, format in
//! `crates/tallymalloc/src/profile/output.rs`), read back and symbolised here, out of the
//! program's process, into the sites the reports show.

use crate::symbols::Symbolizer;
use serde::{Deserialize, Serialize};

/// One process's profile as it wrote it: raw return addresses and its mappings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawProfile {
    pub pid: u32,
    pub sample_bytes: u64,
    pub samples: u64,
    pub dropped: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
    pub sites: Vec<RawSite>,
    /// The names of the Python code objects the sites' Python frames hold: function, file.
    pub python_names: std::collections::HashMap<u64, (String, String)>,
    pub maps: Vec<Mapping>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSite {
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub live_blocks: u64,
    pub live_bytes: u64,
    pub peak_blocks: u64,
    pub peak_bytes: u64,
    /// Return addresses, innermost first.
    pub frames: Vec<u64>,
    /// The Python frames, innermost first, when the sample was taken in Python.
    pub python: Vec<PythonFrame>,
}

/// A Python frame of a sample: its code object, its line, and whether an evaluation loop's C
/// frame entered it (the outermost of the frames that C frame ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PythonFrame {
    pub code: u64,
    pub line: u32,
    pub entry: bool,
}

/// A line of `/proc/PID/maps` that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Where in the file the mapping starts.
    pub offset: u64,
    pub path: String,
}

impl RawProfile {
    /// Reads the file's text; an error names the line that is wrong.
    pub fn parse(text: &str) -> Result<RawProfile, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, "tallymalloc-profile 1")) => {}
            _ => return Err("not a tallymalloc profile (version 1)".to_owned()),
        }
        let mut profile = RawProfile::default();
        for (index, line) in lines.by_ref() {
            let bad = |what: &str| format!("line {}: {what}: {line:?}", index + 1);
            let words: Vec<&str> = line.split(' ').collect();
            let number = |at: usize| -> Result<u64, String> {
                words
                    .get(at)
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| bad("a number expected"))
            };
            match words[0] {
                "pid" => profile.pid = number(1)? as u32,
                "sample_bytes" => profile.sample_bytes = number(1)?,
                "samples" => (profile.samples, profile.dropped) = (number(1)?, number(3)?),
                "live_bytes" => (profile.live_bytes, profile.peak_bytes) = (number(1)?, number(3)?),
                "site" => profile
                    .sites
                    .push(parse_site(&words).ok_or_else(|| bad("a bad site"))?),
                "pycode" => {
                    let (code, names) =
                        parse_python_names(line).ok_or_else(|| bad("a bad pycode"))?;
                    profile.python_names.insert(code, names);
                }
                "maps" => break,
                _ => return Err(bad("unknown line")),
            }
        }
        profile.maps = lines.filter_map(|(_, line)| parse_mapping(line)).collect();
        Ok(profile)
    }
}

fn parse_site(words: &[&str]) -> Option<RawSite> {
    // site N allocations A allocated_bytes B live_blocks C live_bytes D peak_blocks E
    // peak_bytes F frames 0x... 0x...
    let field = |name: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse().ok()
    };
    // ... frames 0x... 0x... [python CODE:LINE[:entry] ...]
    let frames_at = words.iter().position(|w| *w == "frames")?;
    let python_at = words.iter().position(|w| *w == "python");
    let frames = words[frames_at + 1..python_at.unwrap_or(words.len())]
        .iter()
        .filter(|w| !w.is_empty())
        .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .collect::<Option<Vec<u64>>>()?;
    let python = match python_at {
        None => Vec::new(),
        Some(at) => words[at + 1..]
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut parts = w.split(':');
                let code = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
                let line = parts.next()?.parse().ok()?;
                let entry = match parts.next() {
                    None => false,
                    Some("entry") => true,
                    Some(_) => return None,
                };
                Some(PythonFrame { code, line, entry })
            })
            .collect::<Option<Vec<PythonFrame>>>()?,
    };
    Some(RawSite {
        allocations: field("allocations")?,
        allocated_bytes: field("allocated_bytes")?,
        live_blocks: field("live_blocks")?,
        live_bytes: field("live_bytes")?,
        peak_blocks: field("peak_blocks")?,
        peak_bytes: field("peak_bytes")?,
        frames,
        python,
    })
}

/// `pycode 0xCODE "function" "file"`: the names as JSON strings.
fn parse_python_names(line: &str) -> Option<(u64, (String, String))> {
    let rest = line.strip_prefix("pycode ")?;
    let (code, names) = rest.split_once(' ')?;
    let code = u64::from_str_radix(code.trim_start_matches("0x"), 16).ok()?;
    let mut strings = serde_json::Deserializer::from_str(names).into_iter::<String>();
    let function = strings.next()?.ok()?;
    let file = strings.next()?.ok()?;
    Some((code, (function, file)))
}

/// A line of `/proc/PID/maps` (`start-end perms offset dev inode path`), if it maps a file.
pub(crate) fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut words = line.split_whitespace();
    let (start, end) = words.next()?.split_once('-')?;
    let _permissions = words.next()?;
    let offset = u64::from_str_radix(words.next()?, 16).ok()?;
    let _device = words.next()?;
    let _inode = words.next()?;
    let path = words.collect::<Vec<_>>().join(" ");
    if !path.starts_with('/') {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        path,
    })
}

/// The profile as reports show it: `docs/stats-schema.json`'s `profile`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// The mean bytes allocated between two samples.
    pub sample_bytes: u64,
    pub samples: u64,
    /// The estimated bytes live at the peak, all sites together.
    pub peak_bytes: u64,
    /// By estimated bytes allocated, largest first.
    pub sites: Vec<Site>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Site {
    /// Innermost first; inlined calls are frames of their own.
    pub frames: Vec<Frame>,
    pub allocated_bytes: u64,
    pub allocations: u64,
    pub peak_bytes: u64,
    pub live_bytes: u64,
    pub peak_blocks: u64,
    pub live_blocks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub kind: FrameKind,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    Native,
    Python,
}

impl Profile {
    /// Symbolises `raw` from the files its mappings name, its Python frames in place of the
    /// evaluation loop's native frames that ran them.
    pub fn from_raw(raw: &RawProfile) -> Profile {
        let mut symbols = Symbolizer::new(&raw.maps);
        let mut sites: Vec<Site> = raw
            .sites
            .iter()
            .map(|site| Site {
                frames: merged(
                    site.frames
                        .iter()
                        .flat_map(|&address| symbols.frames_at(address))
                        .collect(),
                    python_groups(&site.python, &raw.python_names),
                ),
                allocated_bytes: site.allocated_bytes,
                allocations: site.allocations,
                peak_bytes: site.peak_bytes,
                live_bytes: site.live_bytes,
                peak_blocks: site.peak_blocks,
                live_blocks: site.live_blocks,
            })
            .collect();
        sites.sort_by_key(|site| std::cmp::Reverse(site.allocated_bytes));
        Profile {
            sample_bytes: raw.sample_bytes,
            samples: raw.samples,
            peak_bytes: raw.peak_bytes,
            sites,
        }
    }

    /// Several processes' profiles as one: sites with the same frames add up, and the peak is
    /// the sum of each process's own peak. None if there are none; one comes back as it is.
    pub fn merged<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Option<Profile> {
        let mut profiles = profiles.into_iter();
        let mut merged = profiles.next()?.clone();
        let mut index: std::collections::HashMap<Vec<Frame>, usize> = merged
            .sites
            .iter()
            .enumerate()
            .map(|(at, site)| (site.frames.clone(), at))
            .collect();
        for profile in profiles {
            merged.samples += profile.samples;
            merged.peak_bytes += profile.peak_bytes;
            for site in &profile.sites {
                match index.get(&site.frames) {
                    Some(&at) => merged.sites[at].add(site),
                    None => {
                        index.insert(site.frames.clone(), merged.sites.len());
                        merged.sites.push(site.clone());
                    }
                }
            }
        }
        merged
            .sites
            .sort_by_key(|site| std::cmp::Reverse(site.allocated_bytes));
        Some(merged)
    }

    /// The `profile` of a saved stats document, if it has one.
    pub fn from_json(value: &serde_json::Value) -> Option<Profile> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The sites by a measure, largest first, without those at zero.
    pub fn top_by(&self, measure: impl Fn(&Site) -> u64) -> Vec<&Site> {
        let mut sites: Vec<&Site> = self.sites.iter().filter(|s| measure(s) > 0).collect();
        sites.sort_by_key(|s| std::cmp::Reverse(measure(s)));
        sites
    }
}

/// The C function that runs Python frames: each of its frames on a native stack stands for the
/// Python frames one call of it ran.
pub const EVALUATION_LOOP: &str = "_PyEval_EvalFrameDefault";

/// `python` (innermost first) in groups, each the frames one call of the evaluation loop ran:
/// a group ends at the frame that call entered.
fn python_groups(
    python: &[PythonFrame],
    names: &std::collections::HashMap<u64, (String, String)>,
) -> Vec<Vec<Frame>> {
    let mut groups = vec![Vec::new()];
    for frame in python {
        let (function, file) = names
            .get(&frame.code)
            .cloned()
            .unwrap_or_else(|| ("<python>".to_owned(), String::new()));
        groups.last_mut().unwrap().push(Frame {
            function,
            file,
            line: frame.line,
            kind: FrameKind::Python,
        });
        if frame.entry {
            groups.push(Vec::new());
        }
    }
    groups.retain(|group| !group.is_empty());
    groups
}

/// `native` with each evaluation loop's frame replaced by the next group of Python frames, as
/// memray's native mode shows them; groups left over (the native stack was cut short, or its
/// symbols are missing) go outermost.
pub fn merged(native: Vec<Frame>, groups: Vec<Vec<Frame>>) -> Vec<Frame> {
    let mut groups = groups.into_iter();
    let mut frames = Vec::with_capacity(native.len());
    for frame in native {
        if frame.function == EVALUATION_LOOP {
            if let Some(group) = groups.next() {
                frames.extend(group);
                continue;
            }
        }
        frames.push(frame);
    }
    frames.extend(groups.flatten());
    frames
}

impl Site {
    /// Adds `other`'s estimates to this site's.
    fn add(&mut self, other: &Site) {
        self.allocated_bytes += other.allocated_bytes;
        self.allocations += other.allocations;
        self.peak_bytes += other.peak_bytes;
        self.live_bytes += other.live_bytes;
        self.peak_blocks += other.peak_blocks;
        self.live_blocks += other.live_blocks;
    }
}

impl Frame {
    /// `function (file:line)`, or what of it is known.
    pub fn describe(&self) -> String {
        match (self.file.is_empty(), self.line) {
            (true, _) => self.function.clone(),
            (false, 0) => format!("{} ({})", self.function, self.file),
            (false, line) => format!("{} ({}:{line})", self.function, self.file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "tallymalloc-profile 1\npid 42\nsample_bytes 524288\nsamples 7 dropped 0\n\
        live_bytes 10 peak_bytes 2000\nsite 3 allocations 5 allocated_bytes 1000 live_blocks 0 \
        live_bytes 0 peak_blocks 1 peak_bytes 600 frames 0x1000 0x2000\nmaps\n\
        55d0c0a00000-55d0c0a20000 r-xp 00001000 08:01 1234 /usr/bin/some program\n\
        7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n";

    #[test]
    fn a_profile_reads_back() {
        let raw = RawProfile::parse(TEXT).unwrap();
        assert_eq!(
            (raw.pid, raw.sample_bytes, raw.samples, raw.peak_bytes),
            (42, 524288, 7, 2000)
        );
        assert_eq!(raw.sites.len(), 1);
        assert_eq!(raw.sites[0].frames, vec![0x1000, 0x2000]);
        assert_eq!(raw.sites[0].peak_bytes, 600);
        assert_eq!(
            raw.maps,
            vec![Mapping {
                start: 0x55d0c0a00000,
                end: 0x55d0c0a20000,
                offset: 0x1000,
                path: "/usr/bin/some program".to_owned(),
            }]
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        assert!(RawProfile::parse("hello").is_err());
        let error = RawProfile::parse("tallymalloc-profile 1\nsamples x dropped 0\n").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        assert!(RawProfile::parse("tallymalloc-profile 1\nsite 1 frames zz\n").is_err());
    }

    fn native(function: &str) -> Frame {
        Frame {
            function: function.to_owned(),
            file: String::new(),
            line: 0,
            kind: FrameKind::Native,
        }
    }

    #[test]
    fn python_frames_replace_the_evaluation_loops_that_ran_them() {
        let text = "tallymalloc-profile 1\nsite 1 allocations 1 allocated_bytes 1 live_blocks 0 \
            live_bytes 0 peak_blocks 0 peak_bytes 0 frames 0x10 0x20 python 0xa0:3 0xb0:7:entry \
            0xc0:11:entry\npycode 0xa0 \"inner\" \"/x.py\"\npycode 0xb0 \"outer\" \"/x.py\"\n\
            pycode 0xc0 \"<module>\" \"/main py.py\"\nmaps\n";
        let raw = RawProfile::parse(text).unwrap();
        let site = &raw.sites[0];
        assert_eq!(site.frames, vec![0x10, 0x20]);
        assert_eq!(
            site.python,
            vec![
                PythonFrame {
                    code: 0xa0,
                    line: 3,
                    entry: false
                },
                PythonFrame {
                    code: 0xb0,
                    line: 7,
                    entry: true
                },
                PythonFrame {
                    code: 0xc0,
                    line: 11,
                    entry: true
                },
            ]
        );
        assert_eq!(
            raw.python_names[&0xc0],
            ("<module>".to_owned(), "/main py.py".to_owned())
        );
        let groups = python_groups(&site.python, &raw.python_names);
        assert_eq!(groups.len(), 2);
        let native_stack = vec![
            native("PyObject_Malloc"),
            native(EVALUATION_LOOP),
            native("PyObject_Vectorcall"),
            native(EVALUATION_LOOP),
            native("main"),
        ];
        let names: Vec<String> = merged(native_stack, groups)
            .iter()
            .map(|f| f.function.clone())
            .collect();
        assert_eq!(
            names,
            [
                "PyObject_Malloc",
                "inner",
                "outer",
                "PyObject_Vectorcall",
                "<module>",
                "main"
            ]
        );
        // Without the loop's symbol, the Python frames go outermost.
        let groups = python_groups(&site.python, &raw.python_names);
        let names: Vec<String> = merged(vec![native("main")], groups)
            .iter()
            .map(|f| f.function.clone())
            .collect();
        assert_eq!(names, ["main", "inner", "outer", "<module>"]);
    }
}
