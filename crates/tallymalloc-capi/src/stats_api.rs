//! The stats API of `include/tallymalloc.h`: the JSON or the human table into a caller's
//! buffer, the table onto a stdio stream, one domain's figures into a struct.

use core::ffi::{c_char, c_int};
use tallymalloc_core::{self as core_allocator, Domain};

/// Writes the stats JSON into `buffer` (at most `length` bytes, NUL included) and returns the
/// length of the whole text, as `snprintf` does. `buffer` may be NULL when `length` is 0.
///
/// # Safety
/// `buffer` must be valid for `length` bytes of writes, or `length` must be 0.
#[no_mangle]
pub unsafe extern "C" fn tm_stats_json(buffer: *mut c_char, length: usize) -> usize {
    // SAFETY: the caller's contract.
    core_allocator::stats_json(unsafe { caller_buffer(buffer, length) })
}

/// Writes the human stats table into `buffer` as `tm_stats_json` writes the JSON.
///
/// # Safety
/// `buffer` must be NULL or hold `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tm_stats_text(buffer: *mut c_char, length: usize) -> usize {
    // SAFETY: the caller's contract.
    core_allocator::stats_text(unsafe { caller_buffer(buffer, length) })
}

/// The caller's `buffer` of `length` bytes as a slice (empty for NULL or 0).
///
/// # Safety
/// `buffer` must be NULL or hold `length` writable bytes for as long as the slice is used.
unsafe fn caller_buffer<'a>(buffer: *mut c_char, length: usize) -> &'a mut [u8] {
    if buffer.is_null() || length == 0 {
        return &mut [];
    }
    // SAFETY: the caller gives us `length` writable bytes.
    unsafe { core::slice::from_raw_parts_mut(buffer.cast(), length) }
}

/// One domain's figures, as `struct tm_domain_stats` in the header lays them out.
#[repr(C)]
pub struct DomainFigures {
    live_bytes: u64,
    peak_bytes: u64,
    live_blocks: u64,
    allocations: u64,
    frees: u64,
    allocated_bytes: u64,
    mismatches: u64,
}

/// Fills `out` with domain `id`'s figures: 0, or -1 with errno EINVAL for an id that is not
/// registered or a NULL `out`.
///
/// # Safety
/// `out` must be NULL or point to a writable `struct tm_domain_stats`.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_stats(id: c_int, out: *mut DomainFigures) -> c_int {
    let domain = usize::try_from(id).ok().and_then(Domain::from_id);
    let (Some(domain), false) = (domain, out.is_null()) else {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    };
    let stats = core_allocator::stats();
    let figures = stats.domain(domain);
    // SAFETY: the caller's contract: `out` is writable.
    unsafe {
        out.write(DomainFigures {
            live_bytes: figures.live_bytes,
            peak_bytes: figures.peak_bytes,
            live_blocks: figures.live_blocks,
            allocations: figures.allocations,
            frees: figures.frees,
            allocated_bytes: figures.allocated_bytes,
            mismatches: figures.mismatches,
        })
    };
    0
}

/// A stdio stream, as a place to write the table.
struct StreamSink(*mut libc::FILE);

impl core_allocator::StatsSink for StreamSink {
    fn put(&mut self, bytes: &[u8]) {
        // SAFETY: the stream is the caller's open FILE (tm_stats_print's contract).
        unsafe { libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), self.0) };
    }
}

/// Prints the human stats table on `stream` (stderr when NULL).
///
/// # Safety
/// `stream` must be NULL or an open stdio stream.
#[no_mangle]
pub unsafe extern "C" fn tm_stats_print(stream: *mut libc::FILE) {
    if stream.is_null() {
        core_allocator::stats_print_to_fd(2);
        return;
    }
    core_allocator::write_stats_table(&mut StreamSink(stream));
}
