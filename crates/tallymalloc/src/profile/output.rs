//! The profile at exit: written to `TALLYMALLOC_PROFILE_FILE` (`%p`: the process id) as
//! raw addresses and the process's mappings, for the `tallymalloc` command to symbolise out of
//! process; without a file, the top sites are printed on stderr, symbolised here.
//!
//! The file is lines of text, fields split by single spaces (`docs/profile-format.md`):
//!
//! ```text
//! tallymalloc-profile 1
//! pid 4242
//! sample_bytes 524288
//! samples 1830 dropped 0
//! live_bytes 1048576 peak_bytes 52428800
//! site 3 allocations 98304 allocated_bytes 31457280 live_blocks 0 live_bytes 0 peak_blocks 16384 peak_bytes 5242880 frames 0x55d0c0a01234 0x7f1e2b3c4d5e
//! maps
//! (the text of /proc/self/maps, to the end of the file)
//! ```
//!
//! Estimates are rounded to whole numbers; frames are return addresses, innermost first. Nothing here allocates (PF2).

use super::python;
use super::totals::{self, SiteEstimate};
use crate::platform::text::Line;
use crate::platform::unwind::Stack;
use crate::policy::options;
use crate::stats::exit_report::ReportFile;
use crate::stats::report::{json_string, FdSink, Sink};

/// Sites the stderr summary shows.
const TOP_SITES: usize = 5;

/// Writes the profile at exit, where the options say.
pub fn write_at_exit() {
    let path = options::profile_path();
    if path.is_empty() {
        print_top_sites();
        return;
    }
    let Some(file) = ReportFile::create(path, b"the profile") else {
        return;
    };
    write_to_fd(file.fd());
    file.finish();
}

/// Writes the whole file (the profile, then the mappings) to `fd`. Allocates nothing.
pub fn write_to_fd(fd: i32) {
    let mut sink = FdSink::new(fd);
    write_profile(&mut sink);
    copy_maps(&mut sink);
}

fn rounded(value: f64) -> u64 {
    if value <= 0.0 {
        0
    } else {
        (value + 0.5) as u64
    }
}

/// The header and one line per site.
pub fn write_profile(sink: &mut impl Sink) {
    let (samples, live_bytes, peak_bytes) = totals::summary();
    let mut line = Line::new();
    line.text(b"tallymalloc-profile 1\npid ")
        // SAFETY: getpid has no preconditions.
        .decimal(unsafe { libc::getpid() } as u64)
        .text(b"\nsample_bytes ")
        .decimal(options::profile_sample_bytes() as u64)
        .text(b"\nsamples ")
        .decimal(samples)
        .text(b" dropped ")
        .decimal(super::samples::dropped())
        .text(b"\nlive_bytes ")
        .decimal(rounded(live_bytes))
        .text(b" peak_bytes ")
        .decimal(rounded(peak_bytes))
        .text(b"\n");
    sink.put(line.as_bytes());
    totals::for_each_site(|site| write_site(sink, site));
    write_python_names(sink);
}

fn write_site(sink: &mut impl Sink, site: &SiteEstimate) {
    let mut line = Line::new();
    line.text(b"site ").decimal(site.site as u64);
    for (name, value) in [
        (&b" allocations "[..], site.allocations),
        (b" allocated_bytes ", site.allocated_bytes),
        (b" live_blocks ", site.live_blocks),
        (b" live_bytes ", site.live_bytes),
        (b" peak_blocks ", site.peak_blocks),
        (b" peak_bytes ", site.peak_bytes),
    ] {
        line.text(name).decimal(rounded(value));
    }
    line.text(b" frames");
    sink.put(line.as_bytes());
    let frames = super::site_frames(site.site).unwrap_or(&[]);
    let python_at = frames.iter().position(|&frame| frame == python::MARK);
    for &frame in &frames[..python_at.unwrap_or(frames.len())] {
        let mut line = Line::new();
        line.text(b" ").hex(frame);
        sink.put(line.as_bytes());
    }
    if let Some(at) = python_at {
        // ` python CODE:LINE CODE:LINE:entry ...`, innermost first.
        sink.put(b" python");
        for pair in frames[at + 1..].chunks_exact(2) {
            let mut line = Line::new();
            line.text(b" ")
                .hex(pair[0] & !python::ENTRY)
                .text(b":")
                .decimal(pair[1] as u64);
            if pair[0] & python::ENTRY != 0 {
                line.text(b":entry");
            }
            sink.put(line.as_bytes());
        }
    }
    sink.put(b"\n");
}

/// The names of the Python code objects the sites hold: `pycode CODE "function" "file"`.
fn write_python_names(sink: &mut impl Sink) {
    python::for_each_name(|code, function, file| {
        let mut line = Line::new();
        line.text(b"pycode ").hex(code).text(b" ");
        sink.put(line.as_bytes());
        json_string(sink, function);
        sink.put(b" ");
        json_string(sink, file);
        sink.put(b"\n");
    });
}

/// Copies `/proc/self/maps` after a `maps` line, through a stack buffer.
fn copy_maps(sink: &mut impl Sink) {
    sink.put(b"maps\n");
    // SAFETY: a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut buffer = [0u8; 4096];
    loop {
        // SAFETY: `buffer` is writable for its length.
        let read = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
        if read <= 0 {
            break;
        }
        sink.put(&buffer[..read as usize]);
    }
    // SAFETY: we opened `fd` above.
    unsafe { libc::close(fd) };
}

/// Without a file: the sites that allocated most, symbolised here, on stderr.
fn print_top_sites() {
    let mut top = [SiteEstimate::default(); TOP_SITES];
    totals::for_each_site(|site| {
        let smallest = (0..TOP_SITES)
            .min_by(|&a, &b| top[a].allocated_bytes.total_cmp(&top[b].allocated_bytes))
            .unwrap_or(0);
        if site.allocated_bytes > top[smallest].allocated_bytes {
            top[smallest] = *site;
        }
    });
    top.sort_by(|a, b| b.allocated_bytes.total_cmp(&a.allocated_bytes));
    let (samples, _, peak_bytes) = totals::summary();
    let mut line = Line::new();
    line.text(b"tallymalloc: profile: ")
        .decimal(samples)
        .text(b" samples, one per ")
        .decimal(options::profile_sample_bytes() as u64)
        .text(b" bytes on average; estimated peak ")
        .decimal(rounded(peak_bytes))
        .text(b" bytes live. Top sites by bytes allocated:\n");
    line.write_to_stderr();
    for site in top.iter().filter(|site| site.allocations > 0.0) {
        let mut line = Line::new();
        line.text(b"  ")
            .decimal(rounded(site.allocated_bytes))
            .text(b" bytes in ")
            .decimal(rounded(site.allocations))
            .text(b" allocations, ")
            .decimal(rounded(site.peak_bytes))
            .text(b" live at the peak:\n");
        line.write_to_stderr();
        if let Some(frames) = super::site_frames(site.site) {
            let native = frames.split(|&frame| frame == python::MARK).next();
            crate::debug::backtrace::print(&Stack::from_frames(native.unwrap_or(&[])));
        }
    }
}
