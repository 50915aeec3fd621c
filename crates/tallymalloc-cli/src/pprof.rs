//! A profile as a gzipped pprof protobuf (github.com/google/pprof, `proto/profile.proto`), as
//! `go tool pprof`, speedscope and Pyroscope read it: four sample types, `alloc_objects` and
//! `alloc_space` (all allocations) and `inuse_objects` and `inuse_space` (live at the peak),
//! one sample per site, one location per frame (an inlined call is a location of its own).

use crate::profile::{Frame, Profile};
use flate2::write::GzEncoder;
use std::collections::HashMap;
use std::io::Write;

#[derive(Clone, PartialEq, prost::Message)]
struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
    /// The sample type shown first: `inuse_space`.
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    /// Innermost first.
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// Interns strings, functions and locations as pprof numbers them (strings from 0, with ""
/// first; functions and locations from 1).
#[derive(Default)]
struct Tables {
    strings: HashMap<String, i64>,
    string_table: Vec<String>,
    functions: HashMap<(String, String), u64>,
    function: Vec<Function>,
    locations: HashMap<Frame, u64>,
    location: Vec<Location>,
}

impl Tables {
    fn string(&mut self, text: &str) -> i64 {
        if let Some(&index) = self.strings.get(text) {
            return index;
        }
        let index = self.string_table.len() as i64;
        self.string_table.push(text.to_owned());
        self.strings.insert(text.to_owned(), index);
        index
    }

    fn location(&mut self, frame: &Frame) -> u64 {
        if let Some(&id) = self.locations.get(frame) {
            return id;
        }
        let key = (frame.function.clone(), frame.file.clone());
        let function_id = match self.functions.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.function.len() as u64 + 1;
                let name = self.string(&frame.function);
                let filename = self.string(&frame.file);
                self.function.push(Function {
                    id,
                    name,
                    system_name: name,
                    filename,
                });
                self.functions.insert(key, id);
                id
            }
        };
        let id = self.location.len() as u64 + 1;
        self.location.push(Location {
            id,
            line: vec![Line {
                function_id,
                line: i64::from(frame.line),
            }],
        });
        self.locations.insert(frame.clone(), id);
        id
    }
}

/// The profile's protobuf, not yet compressed.
pub fn encode(profile: &Profile) -> Vec<u8> {
    use prost::Message;
    let mut tables = Tables::default();
    tables.string("");
    let value_type = |tables: &mut Tables, kind: &str, unit: &str| ValueType {
        r#type: tables.string(kind),
        unit: tables.string(unit),
    };
    let sample_type = vec![
        value_type(&mut tables, "alloc_objects", "count"),
        value_type(&mut tables, "alloc_space", "bytes"),
        value_type(&mut tables, "inuse_objects", "count"),
        value_type(&mut tables, "inuse_space", "bytes"),
    ];
    let period_type = Some(value_type(&mut tables, "space", "bytes"));
    let default_sample_type = sample_type[3].r#type;
    let sample = profile
        .sites
        .iter()
        .map(|site| Sample {
            location_id: site.frames.iter().map(|f| tables.location(f)).collect(),
            value: vec![
                site.allocations as i64,
                site.allocated_bytes as i64,
                site.peak_blocks as i64,
                site.peak_bytes as i64,
            ],
        })
        .collect();
    PprofProfile {
        sample_type,
        sample,
        location: tables.location,
        function: tables.function,
        string_table: tables.string_table,
        period_type,
        period: profile.sample_bytes as i64,
        default_sample_type,
    }
    .encode_to_vec()
}

/// The profile as a gzipped pprof file's bytes.
pub fn gzipped(profile: &Profile) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&encode(profile))
        .expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}
