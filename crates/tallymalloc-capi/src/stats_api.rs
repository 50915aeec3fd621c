//! The stats API of `include/tallymalloc.h`: the JSON into a caller's buffer, and the human
//! table onto a stdio stream.

use core::ffi::c_char;
use tallymalloc_core as core_allocator;

/// Writes the stats JSON into `buffer` (at most `length` bytes, NUL included) and returns the
/// length of the whole text, as `snprintf` does. `buffer` may be NULL when `length` is 0.
///
/// # Safety
/// `buffer` must be valid for `length` bytes of writes, or `length` must be 0.
#[no_mangle]
pub unsafe extern "C" fn tm_stats_json(buffer: *mut c_char, length: usize) -> usize {
    let slice: &mut [u8] = if buffer.is_null() || length == 0 {
        &mut []
    } else {
        // SAFETY: the caller gives us `length` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buffer.cast(), length) }
    };
    core_allocator::stats_json(slice)
}

/// Writes the human stats table into `buffer` as `tm_stats_json` writes the JSON.
///
/// # Safety
/// `buffer` must be NULL or hold `length` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tm_stats_text(buffer: *mut c_char, length: usize) -> usize {
    let slice: &mut [u8] = if buffer.is_null() || length == 0 {
        &mut []
    } else {
        // SAFETY: the caller gives us `length` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buffer.cast(), length) }
    };
    core_allocator::stats_text(slice)
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
