//! Return addresses to functions, files and lines, from the files a process had mapped: the
//! DWARF line tables where the file has them (inlined calls become frames of their own), its
//! symbol table otherwise, and the file and offset when neither knows.
//!
//! An address is looked up one byte before it: a return address is the instruction after the
//! call, which may already belong to the next line, or to the next function.

use crate::profile::{Frame, FrameKind, Mapping};
use object::{Object, ObjectSegment};
use std::collections::HashMap;

pub struct Symbolizer<'m> {
    maps: &'m [Mapping],
    objects: HashMap<String, Option<LoadedObject>>,
    known: HashMap<u64, Vec<Frame>>,
}

struct LoadedObject {
    loader: addr2line::Loader,
    /// Loaded segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl LoadedObject {
    fn open(path: &str) -> Option<LoadedObject> {
        let bytes = std::fs::read(path).ok()?;
        let file = object::File::parse(&*bytes).ok()?;
        let segments = file
            .segments()
            .map(|segment| {
                let (offset, size) = segment.file_range();
                (offset, size, segment.address())
            })
            .collect();
        let loader = addr2line::Loader::new(path).ok()?;
        Some(LoadedObject { loader, segments })
    }

    /// The address the file's own tables use for `file_offset`.
    fn file_address(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(offset, size, _)| (*offset..offset + size).contains(&file_offset))
            .map(|(offset, _, address)| address + (file_offset - offset))
    }
}

impl<'m> Symbolizer<'m> {
    pub fn new(maps: &'m [Mapping]) -> Symbolizer<'m> {
        Symbolizer {
            maps,
            objects: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// The frames of the return address `address`, innermost (inlined) first.
    pub fn frames_at(&mut self, address: u64) -> Vec<Frame> {
        if let Some(frames) = self.known.get(&address) {
            return frames.clone();
        }
        let frames = self.look_up(address);
        self.known.insert(address, frames.clone());
        frames
    }

    fn look_up(&mut self, address: u64) -> Vec<Frame> {
        let probe = address.saturating_sub(1);
        let Some(mapping) = self.maps.iter().find(|m| (m.start..m.end).contains(&probe)) else {
            return vec![native(format!("0x{address:x}"), String::new(), 0)];
        };
        let file_offset = probe - mapping.start + mapping.offset;
        let object = self
            .objects
            .entry(mapping.path.clone())
            .or_insert_with(|| LoadedObject::open(&mapping.path));
        let object_name = mapping.path.rsplit('/').next().unwrap_or(&mapping.path);
        let unknown = || {
            vec![native(
                format!("{object_name}+0x{file_offset:x}"),
                String::new(),
                0,
            )]
        };
        let Some(object) = object.as_ref() else {
            return unknown();
        };
        let Some(file_address) = object.file_address(file_offset) else {
            return unknown();
        };
        let mut frames = Vec::new();
        if let Ok(mut found) = object.loader.find_frames(file_address) {
            while let Ok(Some(frame)) = found.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|name| name.demangle().ok())
                    .map(|name| name.into_owned());
                let (file, line) = frame
                    .location
                    .map(|l| (l.file.unwrap_or("").to_owned(), l.line.unwrap_or(0)))
                    .unwrap_or_default();
                let function = function
                    .or_else(|| symbol(object, file_address))
                    .unwrap_or_else(|| format!("{object_name}+0x{file_offset:x}"));
                frames.push(native(function, file, line));
            }
        }
        if frames.is_empty() {
            match symbol(object, file_address) {
                Some(function) => frames.push(native(function, String::new(), 0)),
                None => return unknown(),
            }
        }
        frames
    }
}

/// The symbol table's name for `file_address`, demangled.
fn symbol(object: &LoadedObject, file_address: u64) -> Option<String> {
    let name = object.loader.find_symbol(file_address)?;
    Some(addr2line::demangle_auto(name.into(), None).into_owned())
}

fn native(function: String, file: String, line: u32) -> Frame {
    Frame {
        function,
        file,
        line,
        kind: FrameKind::Native,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        // A return address inside this function: where `backtrace` returns to.
        let mut frames = [0usize; 1];
        tallymalloc::backtrace(&mut frames, 0);
        frames[0] as u64
    }

    #[test]
    fn this_test_names_itself_with_its_file() {
        let address = a_function_to_find();
        let maps: Vec<Mapping> = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(crate::profile::parse_mapping)
            .collect();
        let mut symbols = Symbolizer::new(&maps);
        let frames = symbols.frames_at(address);
        assert!(
            frames.iter().any(
                |f| f.function.contains("a_function_to_find") && f.file.ends_with("symbols.rs")
            ),
            "{frames:?}"
        );
        // Outside every mapping: the bare address.
        assert_eq!(symbols.frames_at(8)[0].function, "0x8");
    }
}
