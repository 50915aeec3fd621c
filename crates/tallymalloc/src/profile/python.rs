//! Python frames for the samples. The core knows nothing of CPython: a Python extension (the
//! tallymalloc package) registers a *frame source*, a function that writes the calling
//! thread's Python frames, innermost first, when that thread holds the GIL (and nothing
//! otherwise), without allocating and without taking the GIL. A sample's site is then its
//! native frames, [`MARK`], and two words per Python frame: the code object's address (with
//! [`ENTRY`] set on a frame that an evaluation loop's C frame entered first, so that a reader
//! knows which Python frames each `_PyEval_EvalFrameDefault` ran) and the line.
//!
//! Code objects are named out of the allocator's way: before the interpreter finalises, the
//! extension hands each code object it reported to [`name_code`], which copies its function
//! and file names here, for the profile file written at exit.
//!
//! Invariants:
//! - **PY1**: the source is called only from `record`, on the sampled thread, with room for
//!   [`MAX_FRAMES`] frames; it must not allocate, take the GIL or call back into the
//!   allocator, and must keep every code object it reports alive (the names are read later).
//! - **PY2**: the names live in one metadata mapping made on first use and never freed; an
//!   entry is written once, under `NAMES`' lock, and read under it.

use crate::platform::lock_registry::Rank;
use crate::platform::sync::SpinLock;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Separates a site's native frames from its Python ones. No return address is this.
pub const MARK: usize = usize::MAX;
/// Set in a Python frame's code word when an evaluation loop entered it (the innermost frame
/// of one `_PyEval_EvalFrameDefault` call's chain is the last of its group). Code objects are
/// aligned, so the low bit is free.
pub const ENTRY: usize = 1;
/// Python frames kept per sample, innermost first.
pub const MAX_FRAMES: usize = 48;

/// The frame source: writes up to `capacity` frames as `[code | ENTRY?, line]` pairs into
/// `out` (`2 * capacity` words) and returns how many frames it wrote.
pub type FrameSource = unsafe extern "C" fn(out: *mut usize, capacity: usize) -> usize;

static SOURCE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers the frame source (PY1), or none.
pub fn set_source(source: Option<FrameSource>) {
    let raw = source.map_or(core::ptr::null_mut(), |f| f as *mut ());
    SOURCE.store(raw, Ordering::Release);
}

/// Whether a frame source is registered: in a process without the Python package, a sample
/// skips the frames' buffer altogether.
pub fn has_source() -> bool {
    !SOURCE.load(Ordering::Relaxed).is_null()
}

/// Writes the calling thread's Python frames into `out` (pairs of words), if a source is
/// registered; returns how many frames.
pub fn capture(out: &mut [usize; 2 * MAX_FRAMES]) -> usize {
    let raw = SOURCE.load(Ordering::Acquire);
    if raw.is_null() {
        return 0;
    }
    // SAFETY: only `set_source` stores here, and it stores a `FrameSource`.
    let source = unsafe { core::mem::transmute::<*mut (), FrameSource>(raw) };
    // SAFETY: PY1: `out` has room for MAX_FRAMES pairs.
    let written = unsafe { source(out.as_mut_ptr(), MAX_FRAMES) };
    written.min(MAX_FRAMES)
}

/// Slots in the name table (open addressing, at most seven eighths used).
const NAME_SLOTS: usize = 1 << 15;
/// Bytes of names, all together.
const NAME_BYTES: usize = 8 << 20;
/// The longest name kept, in bytes (longer ones are cut).
const NAME_MAX: usize = 1024;

#[derive(Clone, Copy)]
struct NameEntry {
    /// 0: free.
    code: usize,
    function: (u32, u32),
    file: (u32, u32),
}

struct Names {
    /// `NAME_SLOTS` entries, then `NAME_BYTES` bytes of text (PY2); null before first use.
    entries: *mut NameEntry,
    text: *mut u8,
    used_slots: usize,
    used_bytes: usize,
}

// SAFETY: the table is reached only under its lock (PY2).
unsafe impl Send for Names {}

static NAMES: SpinLock<Names> = SpinLock::new(
    Rank::ProfilePythonNames,
    Names {
        entries: core::ptr::null_mut(),
        text: core::ptr::null_mut(),
        used_slots: 0,
        used_bytes: 0,
    },
);

fn first_slot(code: usize) -> usize {
    (code >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) % NAME_SLOTS
}

/// Names the code object at `code` (its function and file, UTF-8); a code object named before
/// keeps its first names. False if the table is full or cannot be mapped.
pub fn name_code(code: usize, function: &[u8], file: &[u8]) -> bool {
    let code = code & !ENTRY;
    if code == 0 {
        return false;
    }
    let mut names = NAMES.lock();
    if names.entries.is_null() {
        let size = NAME_SLOTS * size_of::<NameEntry>() + NAME_BYTES;
        let Some(memory) = crate::platform::os::reserve_metadata(size) else {
            return false;
        };
        names.entries = memory.as_ptr().cast();
        // SAFETY: the mapping holds the entries, then the text.
        names.text = unsafe { memory.as_ptr().add(NAME_SLOTS * size_of::<NameEntry>()) };
    }
    let function = &function[..function.len().min(NAME_MAX)];
    let file = &file[..file.len().min(NAME_MAX)];
    if names.used_slots >= NAME_SLOTS / 8 * 7
        || names.used_bytes + function.len() + file.len() > NAME_BYTES
    {
        return false;
    }
    let mut slot = first_slot(code);
    loop {
        // SAFETY: PY2: `slot < NAME_SLOTS`, within the mapping, read under the lock (a fresh
        // mapping is zeroed: every entry free).
        let entry = unsafe { &mut *names.entries.add(slot) };
        if entry.code == code {
            return true;
        }
        if entry.code == 0 {
            let mut place = |bytes: &[u8]| {
                let start = names.used_bytes;
                // SAFETY: PY2: checked above that the text has room; written once.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        names.text.add(start),
                        bytes.len(),
                    )
                };
                names.used_bytes += bytes.len();
                (start as u32, bytes.len() as u32)
            };
            let function = place(function);
            let file = place(file);
            *entry = NameEntry {
                code,
                function,
                file,
            };
            names.used_slots += 1;
            return true;
        }
        slot = (slot + 1) % NAME_SLOTS;
    }
}

/// Calls `each(code, function, file)` for every named code object, under the table's lock.
pub fn for_each_name(mut each: impl FnMut(usize, &[u8], &[u8])) {
    let names = NAMES.lock();
    if names.entries.is_null() {
        return;
    }
    for slot in 0..NAME_SLOTS {
        // SAFETY: PY2, as in `name_code`.
        let entry = unsafe { *names.entries.add(slot) };
        if entry.code == 0 {
            continue;
        }
        let text = |(start, length): (u32, u32)| {
            // SAFETY: PY2: the entry's text was written before the entry, and never changes.
            unsafe { core::slice::from_raw_parts(names.text.add(start as usize), length as usize) }
        };
        each(entry.code, text(entry.function), text(entry.file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_once_and_read_back() {
        assert!(name_code(0x7000_1230, b"outer", b"/tmp/a.py"));
        assert!(name_code(0x7000_1230 | ENTRY, b"renamed", b"/tmp/b.py"));
        assert!(name_code(0x7000_4560, b"inner", b"/tmp/a.py"));
        assert!(!name_code(0, b"nothing", b""));
        let mut seen = Vec::new();
        for_each_name(|code, function, file| {
            if code == 0x7000_1230 || code == 0x7000_4560 {
                seen.push((code, function.to_vec(), file.to_vec()));
            }
        });
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (0x7000_1230, b"outer".to_vec(), b"/tmp/a.py".to_vec()),
                (0x7000_4560, b"inner".to_vec(), b"/tmp/a.py".to_vec()),
            ]
        );
    }

    unsafe extern "C" fn two_frames(out: *mut usize, capacity: usize) -> usize {
        assert!(capacity >= 2);
        // SAFETY: the caller gives room for `capacity` pairs.
        unsafe {
            *out = 0x7000_1230 | ENTRY;
            *out.add(1) = 12;
            *out.add(2) = 0x7000_4560;
            *out.add(3) = 34;
        }
        2
    }

    #[test]
    fn a_source_fills_the_frames() {
        let mut frames = [0usize; 2 * MAX_FRAMES];
        set_source(Some(two_frames));
        assert_eq!(capture(&mut frames), 2);
        assert_eq!(&frames[..4], &[0x7000_1230 | ENTRY, 12, 0x7000_4560, 34]);
        set_source(None);
        assert_eq!(capture(&mut frames), 0);
    }
}
