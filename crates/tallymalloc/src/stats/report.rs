//! Writing a [`Stats`] snapshot out: the versioned JSON of `docs/stats-schema.json` and the
//! human table, into a caller's buffer (with `snprintf`'s length rule) or straight to a file
//! descriptor.
//!
//! Invariants: nothing here allocates (the exit report and the C API run inside programs whose
//! malloc this is); output goes through a [`Sink`], which never fails halfway through a value.

use crate::platform::text::decimal_digits;
use crate::policy::domain::Domain;
use crate::stats::timeline;
use crate::stats::{self, Figures, Stats};
use core::ops::Range;

/// Where text goes.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A caller's buffer: keeps what fits (leaving room for a NUL) and counts everything, so the
/// caller learns the length it needs, as with `snprintf`.
pub struct BufferSink<'a> {
    buffer: &'a mut [u8],
    needed: usize,
}

impl<'a> BufferSink<'a> {
    pub fn new(buffer: &'a mut [u8]) -> BufferSink<'a> {
        BufferSink { buffer, needed: 0 }
    }

    /// Writes the terminating NUL (if there is any room) and returns the length of the whole
    /// text, without the NUL.
    pub fn finish(self) -> usize {
        if !self.buffer.is_empty() {
            let end = self.needed.min(self.buffer.len() - 1);
            self.buffer[end] = 0;
        }
        self.needed
    }
}

impl Sink for BufferSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let room = self.buffer.len().saturating_sub(1);
        if self.needed < room {
            let taken = bytes.len().min(room - self.needed);
            self.buffer[self.needed..self.needed + taken].copy_from_slice(&bytes[..taken]);
        }
        self.needed += bytes.len();
    }
}

/// A file descriptor, written through a stack buffer.
pub struct FdSink {
    fd: i32,
    buffer: [u8; 4096],
    length: usize,
}

impl FdSink {
    pub fn new(fd: i32) -> FdSink {
        FdSink {
            fd,
            buffer: [0; 4096],
            length: 0,
        }
    }

    pub fn flush(&mut self) {
        let mut rest = &self.buffer[..self.length];
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid readable slice.
            let written = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            if written <= 0 {
                break;
            }
            rest = &rest[written as usize..];
        }
        self.length = 0;
    }
}

impl Sink for FdSink {
    fn put(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.buffer.len()) {
            if self.length + chunk.len() > self.buffer.len() {
                self.flush();
            }
            self.buffer[self.length..self.length + chunk.len()].copy_from_slice(chunk);
            self.length += chunk.len();
        }
    }
}

impl Drop for FdSink {
    fn drop(&mut self) {
        self.flush();
    }
}

fn decimal(sink: &mut impl Sink, value: u64) {
    let mut digits = [0u8; 20];
    sink.put(decimal_digits(value, &mut digits));
}

/// A decimal padded on the left to `width` characters.
fn padded(sink: &mut impl Sink, value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let text = decimal_digits(value, &mut digits);
    for _ in text.len()..width {
        sink.put(b" ");
    }
    sink.put(text);
}

fn field(sink: &mut impl Sink, first: &mut bool, name: &[u8], value: u64) {
    if !*first {
        sink.put(b", ");
    }
    *first = false;
    sink.put(b"\"");
    sink.put(name);
    sink.put(b"\": ");
    decimal(sink, value);
}

/// `bytes` as a JSON string: quotes, backslashes and control characters escaped, and invalid
/// UTF-8 replaced by U+FFFD, as `String::from_utf8_lossy` does (without allocating).
pub(crate) fn json_string(sink: &mut impl Sink, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    sink.put(b"\"");
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut plain = 0;
        for (index, &byte) in valid.iter().enumerate() {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                sink.put(&valid[plain..index]);
                if byte < 0x20 {
                    sink.put(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(byte >> 4) as usize],
                        HEX[(byte & 15) as usize],
                    ]);
                } else {
                    sink.put(&[b'\\', byte]);
                }
                plain = index + 1;
            }
        }
        sink.put(&valid[plain..]);
        if !chunk.invalid().is_empty() {
            sink.put("\u{fffd}".as_bytes());
        }
    }
    sink.put(b"\"");
}

/// `figures` as a JSON object: its counts, then its flags, in the order they are declared.
fn object(sink: &mut impl Sink, figures: &impl Figures) {
    sink.put(b"{");
    let first = &mut true;
    for (name, value) in figures.counts() {
        field(sink, first, name.as_bytes(), value);
    }
    for (name, value) in figures.flags() {
        sink.put(b", \"");
        sink.put(name.as_bytes());
        sink.put(if value { b"\": true" } else { b"\": false" });
    }
    sink.put(b"}");
}

/// Counts what is written, for measuring a text before writing it.
#[derive(Default)]
struct Length(usize);

impl Sink for Length {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

fn length_of(write: impl FnOnce(&mut Length)) -> usize {
    let mut length = Length::default();
    write(&mut length);
    length.0
}

/// Every timeline sample the sampler holds.
pub const WHOLE_TIMELINE: Range<usize> = 0..usize::MAX;

/// How many timeline samples the sizing call leaves room for beyond those held now.
const TIMELINE_ROOM_SAMPLES: usize = 64;

/// The stats JSON in a caller's buffer, for `tm_stats_json` and [`crate::stats_json`].
///
/// An empty buffer asks for the size: the answer is an upper bound that holds for a later call
/// however the figures change meanwhile (the caller's own `malloc` of the buffer, other threads'
/// work): the length with every figure at its widest, plus room for
/// [`TIMELINE_ROOM_SAMPLES`] more timeline samples. It does not cover domains registered in
/// between.
///
/// Otherwise the document goes into `buffer` whole, NUL-terminated, and its length (without
/// the NUL) is returned. When it does not fit, the oldest timeline samples are left out, as
/// few as make it fit, so what the buffer holds is still a complete document; only if it does
/// not fit even without a timeline is it cut, as `snprintf` cuts, and the whole length is
/// returned (`buffer.len()` or more).
pub fn json_into(buffer: &mut [u8]) -> usize {
    let stats = stats::snapshot();
    let samples = timeline::sample_count();
    if buffer.is_empty() {
        let saturated = stats.saturated();
        return length_of(|sink| write_json(&saturated, Some(0..samples), sink))
            + TIMELINE_ROOM_SAMPLES * (widest_sample_length() + SAMPLE_SEPARATOR.len());
    }
    let fits = |first: usize| {
        length_of(|sink| write_json(&stats, Some(first..samples), sink)) < buffer.len()
    };
    let mut first = 0;
    if !fits(0) && fits(samples) {
        // Estimate how many of the oldest samples to leave out, then settle it exactly.
        let mut excess =
            length_of(|sink| write_json(&stats, Some(0..samples), sink)) - (buffer.len() - 1);
        timeline::for_each_sample(0..samples, |sample| {
            if excess > 0 {
                let length = length_of(|sink| {
                    write_sample(
                        sink,
                        sample.time_ms,
                        sample.resident_bytes,
                        sample.live_bytes(),
                    )
                });
                excess = excess.saturating_sub(length + SAMPLE_SEPARATOR.len());
                first += 1;
            }
        });
        while first < samples && !fits(first) {
            first += 1;
        }
    }
    let mut sink = BufferSink::new(buffer);
    write_json(&stats, Some(first..samples), &mut sink);
    sink.finish()
}

/// The longest a timeline sample of the registered domains can be.
fn widest_sample_length() -> usize {
    let live = Domain::all().map(|domain| (domain, u64::MAX));
    length_of(|sink| write_sample(sink, u64::MAX, u64::MAX, live))
}

/// The human table in a caller's buffer, for `tm_stats_text` and [`crate::stats_text`]: an
/// empty buffer asks for an upper bound on its length that holds for a later call however the
/// figures change (every figure at its widest, every size class holding blocks); otherwise as
/// `snprintf` writes, NUL-terminated, returning the whole length.
pub fn table_into(buffer: &mut [u8]) -> usize {
    let stats = stats::snapshot();
    if buffer.is_empty() {
        return length_of(|sink| write_table(&stats.saturated(), sink));
    }
    let mut sink = BufferSink::new(buffer);
    write_table(&stats, &mut sink);
    sink.finish()
}

const SAMPLE_SEPARATOR: &[u8] = b", ";

/// Writes `stats` as JSON (schema version [`crate::stats::SCHEMA_VERSION`]), with the sampler's
/// timeline samples in `timeline` (oldest first, from 0) when it is given: an empty list if no
/// sampler ran.
pub fn write_json(stats: &Stats, timeline: Option<Range<usize>>, sink: &mut impl Sink) {
    sink.put(b"{\"version\": ");
    decimal(sink, stats.version as u64);
    sink.put(b", \"command\": ");
    json_string(sink, stats.command.as_bytes());
    sink.put(b", \"domains\": ");
    by_domain(sink, stats.domains(), |sink, figures| {
        object(sink, *figures)
    });
    sink.put(b", \"size_classes\": [");
    for (index, class) in stats.size_classes.iter().enumerate() {
        if index > 0 {
            sink.put(b", ");
        }
        object(sink, class);
    }
    sink.put(b"], \"huge\": ");
    object(sink, &stats.huge);
    sink.put(b", \"process\": ");
    object(sink, &stats.process);
    if let Some(range) = timeline {
        sink.put(b", \"timeline\": [");
        let mut first_sample = true;
        timeline::for_each_sample(range, |sample| {
            if !first_sample {
                sink.put(SAMPLE_SEPARATOR);
            }
            first_sample = false;
            write_sample(
                sink,
                sample.time_ms,
                sample.resident_bytes,
                sample.live_bytes(),
            );
        });
        sink.put(b"]");
    }
    sink.put(b"}\n");
}

/// One timeline sample as a JSON object.
fn write_sample(
    sink: &mut impl Sink,
    time_ms: u64,
    resident_bytes: u64,
    live_bytes: impl Iterator<Item = (Domain, u64)>,
) {
    sink.put(b"{");
    let first = &mut true;
    field(sink, first, b"time_ms", time_ms);
    field(sink, first, b"resident_bytes", resident_bytes);
    sink.put(b", \"live_bytes\": ");
    by_domain(sink, live_bytes, |sink, live| decimal(sink, *live));
    sink.put(b"}");
}

/// A JSON object keyed by domain name, each value written by `value`.
fn by_domain<S: Sink, T>(
    sink: &mut S,
    entries: impl Iterator<Item = (Domain, T)>,
    mut value: impl FnMut(&mut S, &T),
) {
    sink.put(b"{");
    for (index, (domain, entry)) in entries.enumerate() {
        if index > 0 {
            sink.put(b", ");
        }
        // Domain names are validated to need no escaping (letters, digits, `_`, `-`, `.`).
        sink.put(b"\"");
        sink.put(domain.name_bytes());
        sink.put(b"\": ");
        value(sink, &entry);
    }
    sink.put(b"}");
}

/// Writes the human table: one row per domain, the size classes that hold blocks, the process.
pub fn write_table(stats: &Stats, sink: &mut impl Sink) {
    const KIB: u64 = 1024;
    sink.put(b"tallymalloc stats (pid ");
    // SAFETY: getpid has no preconditions.
    decimal(sink, unsafe { libc::getpid() } as u64);
    sink.put(b", ");
    decimal(sink, stats.process.uptime_ms);
    sink.put(b" ms)\n");
    if !stats.process.accounting_enabled {
        sink.put(b"  (this build does not count: built without the `stats` feature)\n");
    }
    sink.put(b"domain            live KiB   peak KiB  live blocks   allocations        frees  allocated KiB  mismatches\n");
    for (domain, figures) in stats.domains() {
        let name = domain.name_bytes();
        sink.put(name);
        for _ in name.len()..16 {
            sink.put(b" ");
        }
        padded(sink, figures.live_usable_bytes.div_ceil(KIB), 10);
        padded(sink, figures.peak_bytes.div_ceil(KIB), 11);
        padded(sink, figures.live_blocks, 13);
        padded(sink, figures.allocations, 14);
        padded(sink, figures.frees, 13);
        padded(sink, figures.allocated_bytes.div_ceil(KIB), 15);
        padded(sink, figures.mismatches, 12);
        sink.put(b"\n");
    }
    sink.put(b"size class  live blocks    live KiB\n");
    for class in stats
        .size_classes
        .iter()
        .filter(|class| class.live_blocks > 0)
    {
        padded(sink, class.size, 10);
        padded(sink, class.live_blocks, 13);
        padded(sink, class.live_bytes.div_ceil(KIB), 12);
        sink.put(b"\n");
    }
    if stats.huge.live_blocks > 0 {
        sink.put(b"      huge");
        padded(sink, stats.huge.live_blocks, 13);
        padded(sink, stats.huge.live_bytes.div_ceil(KIB), 12);
        sink.put(b"\n");
    }
    let process = &stats.process;
    sink.put(b"process: reserved ");
    decimal(sink, process.reserved_bytes.div_ceil(KIB));
    sink.put(b" KiB, committed ");
    decimal(sink, process.committed_bytes.div_ceil(KIB));
    sink.put(b" KiB, resident ");
    decimal(sink, process.resident_bytes.div_ceil(KIB));
    sink.put(b" KiB; ");
    decimal(sink, process.segments);
    sink.put(b" segments, ");
    decimal(sink, process.pages);
    sink.put(b" pages, ");
    decimal(sink, process.abandoned_segments);
    sink.put(b" abandoned; ");
    decimal(sink, process.threads_seen);
    sink.put(b" threads seen\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sink_keeps_what_fits_and_counts_the_rest() {
        let mut buffer = [0xffu8; 8];
        let mut sink = BufferSink::new(&mut buffer);
        sink.put(b"hello, ");
        sink.put(b"world");
        assert_eq!(sink.finish(), 12);
        assert_eq!(&buffer, b"hello, \0");
        let mut empty = [0u8; 0];
        let mut sink = BufferSink::new(&mut empty);
        sink.put(b"abc");
        assert_eq!(sink.finish(), 3);
    }

    #[test]
    fn json_matches_the_serde_serialisation() {
        let stats = crate::stats::snapshot();
        let mut buffer = vec![0u8; 1 << 16];
        let mut sink = BufferSink::new(&mut buffer);
        write_json(&stats, None, &mut sink);
        let length = sink.finish();
        let ours: serde_json::Value = serde_json::from_slice(&buffer[..length]).unwrap();
        let theirs = serde_json::to_value(&stats).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn strings_are_escaped_as_serde_escapes_them() {
        for text in [
            &b"plain"[..],
            b"a \"quoted\" \\ path",
            b"tab\tnew\nline\x01\x1f",
            b"caf\xc3\xa9 \xff\xfe broken \xe2\x82",
        ] {
            let mut buffer = vec![0u8; 256];
            let mut sink = BufferSink::new(&mut buffer);
            json_string(&mut sink, text);
            let length = sink.finish();
            let ours: String = serde_json::from_slice(&buffer[..length]).unwrap();
            assert_eq!(ours, String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn the_table_names_every_registered_domain() {
        let stats = crate::stats::snapshot();
        let mut buffer = vec![0u8; 1 << 16];
        let mut sink = BufferSink::new(&mut buffer);
        write_table(&stats, &mut sink);
        let length = sink.finish();
        let text = std::str::from_utf8(&buffer[..length]).unwrap();
        for name in ["raw", "mem", "obj"] {
            assert!(text.lines().any(|line| line.starts_with(name)), "{text}");
        }
        assert!(text.contains("process: reserved"));
    }
}
