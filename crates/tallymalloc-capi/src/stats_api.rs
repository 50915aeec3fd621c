//! The stats API of `include/tallymalloc.h`: the JSON or the human table into a caller's
//! buffer, the table onto a stdio stream, one domain's figures into a struct.

use core::ffi::{c_char, c_int};
use tallymalloc_core::{self as core_allocator, Domain, Domains};

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

/// Declares `DomainFigures` from the names of the core's `DomainStats` counts it carries, in
/// the header's order; the tests below hold `include/tallymalloc.h` and the Python package's
/// headers to the same list.
macro_rules! c_figures {
    ($($count:ident),* $(,)?) => {
        /// One domain's figures, as `struct tm_domain_stats` in the header lays them out: a
        /// fixed part of the ABI, so some of the core's counts, not all.
        #[repr(C)]
        pub struct DomainFigures {
            $($count: u64,)*
        }

        impl DomainFigures {
            #[cfg(test)]
            const NAMES: &'static [&'static str] = &[$(stringify!($count)),*];

            fn from_core(figures: &core_allocator::DomainStats) -> DomainFigures {
                DomainFigures {
                    $($count: figures.$count,)*
                }
            }
        }
    };
}

c_figures!(
    live_bytes,
    peak_bytes,
    live_blocks,
    allocations,
    frees,
    allocated_bytes,
    mismatches,
);

/// `TM_ALL_DOMAINS`: every domain together, where the header says a call takes it.
const ALL_DOMAINS: c_int = -1;

/// Fills `out` with domain `id`'s figures, or every domain's added up for `TM_ALL_DOMAINS`
/// (with their peak together): 0, or -1 with errno EINVAL for an id that is not registered or
/// a NULL `out`.
///
/// # Safety
/// `out` must be NULL or point to a writable `struct tm_domain_stats`.
#[no_mangle]
pub unsafe extern "C" fn tm_domain_stats(id: c_int, out: *mut DomainFigures) -> c_int {
    let (Some(domains), false) = (registered_or_all(id), out.is_null()) else {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    };
    let stats = core_allocator::stats();
    let figures = match domains {
        Domains::One(domain) => *stats.domain(domain),
        Domains::All => stats.all_domains(),
    };
    // SAFETY: the caller's contract: `out` is writable.
    unsafe { out.write(DomainFigures::from_core(&figures)) };
    0
}

/// The registered domain `id`, or None (errno EINVAL set).
fn registered(id: c_int) -> Option<Domain> {
    let domain = usize::try_from(id).ok().and_then(Domain::from_id);
    if domain.is_none() {
        core_allocator::set_errno(libc::EINVAL);
    }
    domain
}

/// The registered domain `id`, or all of them for `TM_ALL_DOMAINS`; None (errno EINVAL set)
/// for anything else.
fn registered_or_all(id: c_int) -> Option<Domains> {
    if id == ALL_DOMAINS {
        return Some(Domains::All);
    }
    registered(id).map(Domains::One)
}

/// Stores in `*count` how many blocks of domain `allocated_in` were freed or reallocated
/// through the family of domain `freed_through`: 0, or -1 with errno EINVAL for an id that is
/// not registered or a NULL `count`.
///
/// # Safety
/// `count` must be NULL or point to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tm_mismatches(
    allocated_in: c_int,
    freed_through: c_int,
    count: *mut u64,
) -> c_int {
    let (Some(owner), Some(through)) = (registered(allocated_in), registered(freed_through)) else {
        return -1;
    };
    if count.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract: `count` is writable.
    unsafe { count.write(core_allocator::mismatches_between(owner, through)) };
    0
}

/// Starts domain `id`'s watermark (every domain's together for `TM_ALL_DOMAINS`) again from its
/// live bytes now: 0, or -1 with errno EINVAL for an id that is not registered.
#[no_mangle]
pub extern "C" fn tm_watermark_reset(id: c_int) -> c_int {
    match registered_or_all(id) {
        Some(domains) => {
            core_allocator::reset_watermark(domains);
            0
        }
        None => -1,
    }
}

/// Stores in `*bytes` the most domain `id` (every domain together for `TM_ALL_DOMAINS`) held
/// since its watermark was reset: 0, or -1 with errno EINVAL for an id that is not registered or
/// a NULL `bytes`.
///
/// # Safety
/// `bytes` must be NULL or point to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn tm_watermark(id: c_int, bytes: *mut u64) -> c_int {
    let Some(domains) = registered_or_all(id) else {
        return -1;
    };
    if bytes.is_null() {
        core_allocator::set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: the caller's contract: `bytes` is writable.
    unsafe { bytes.write(core_allocator::watermark(domains)) };
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

#[cfg(test)]
mod tests {
    use super::DomainFigures;
    use tallymalloc_core::{DomainStats, StatsFigures};

    /// The `uint64_t` members of the first C struct in `text` that follows `opening`, in order.
    fn members_after(text: &str, opening: &str) -> Vec<String> {
        let start = text.find(opening).expect(opening) + opening.len();
        let body = &text[start..start + text[start..].find('}').unwrap()];
        body.lines()
            .map(|line| line.split("/*").next().unwrap().trim())
            .filter(|line| !line.is_empty())
            .map(|line| {
                let member = line
                    .strip_prefix("uint64_t ")
                    .unwrap_or_else(|| panic!("not a uint64_t member: {line}"));
                member.trim_end_matches(';').trim().to_string()
            })
            .collect()
    }

    fn source(path: &str) -> String {
        let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_headers_lay_out_the_figures_as_the_library_fills_them() {
        let ours: Vec<String> = DomainFigures::NAMES.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            core::mem::size_of::<DomainFigures>(),
            8 * ours.len(),
            "one uint64_t a figure"
        );
        let c_header = source("include/tallymalloc.h");
        assert_eq!(members_after(&c_header, "struct tm_domain_stats {"), ours);
        let python_header =
            source("../tallymalloc-py/python/tallymalloc/include/tallymalloc_api.h");
        let end = python_header.find("} tallymalloc_domain_stats;").unwrap();
        let start = python_header[..end].rfind("typedef struct {").unwrap();
        assert_eq!(
            members_after(&python_header[start..], "typedef struct {"),
            ours
        );
        // Cython's declaration: one `uint64_t name` a line under the ctypedef.
        let pxd = source("../tallymalloc-py/python/tallymalloc/__init__.pxd");
        let start = pxd.find("ctypedef struct domain_stats").unwrap();
        let declared: Vec<String> = pxd[start..]
            .lines()
            .skip(1)
            .map_while(|line| line.trim().strip_prefix("uint64_t ").map(str::to_string))
            .collect();
        assert_eq!(declared, ours);
        // Each is a count the core keeps, in the core's order.
        let core_order: Vec<usize> = ours
            .iter()
            .map(|name| {
                DomainStats::COUNT_NAMES
                    .iter()
                    .position(|core| core == name)
                    .unwrap_or_else(|| panic!("{name} is not one of the core's figures"))
            })
            .collect();
        assert!(core_order.is_sorted(), "{ours:?}");
    }
}
