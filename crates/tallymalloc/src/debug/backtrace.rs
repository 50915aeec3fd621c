//! Printing call stacks for debug mode's reports. Stacks are captured by
//! `platform::unwind` and symbolised only when a report is printed: `dladdr` names the
//! function and object, and `addr2line`, run as a child process, gives the file and line.
//!
//! Invariants:
//! - **BT2**: printing allocates nothing in this process and takes no lock: the child is
//!   started as `fork` would, but without the fork handlers (which take the allocator's locks,
//!   one of which the report may hold), then `execvpe` (no posix_spawn file actions, which
//!   would call malloc) in an empty environment (so it does not load the allocator itself), and
//!   its output is read into a buffer on the stack.

use crate::platform::text::Line;
pub use crate::platform::unwind::Stack;
use core::ffi::{c_int, c_void};

/// The calling thread's stack at debug mode's depth (`TALLYMALLOC_DEBUG_DEPTH`), less its
/// `skip` innermost frames besides the caller's.
#[inline(always)]
pub fn capture(skip: usize) -> Stack {
    crate::platform::unwind::capture(skip, crate::policy::options::debug_depth())
}

/// The site (`sites.rs`) of the calling thread's stack, captured as [`capture`] does.
#[inline(always)]
pub fn site_here(skip: usize) -> u32 {
    let mut stack = Stack::new();
    crate::platform::unwind::capture_into(&mut stack, skip, crate::policy::options::debug_depth());
    crate::platform::unwind::sites::intern(stack.frames())
}

/// Prints `stack` on stderr, one frame a line: function, object, and file:line when
/// `addr2line` knows them.
pub fn print(stack: &Stack) {
    describe_each(stack, |index, address, frame| {
        let mut line = Line::new();
        line.text(b"    #")
            .decimal(index as u64)
            .text(b" ")
            .hex(address);
        if !frame.function.is_empty() {
            line.text(b" in ").text(frame.function);
        }
        if !frame.place.is_empty() {
            line.text(b" at ").text(frame.place);
        } else if !frame.object.is_empty() {
            line.text(b" (").text(frame.object).text(b")");
        }
        line.text(b"\n");
        line.write_to_stderr();
    });
}

/// What is known of one frame; each part empty when unknown.
pub struct Frame<'a> {
    pub function: &'a [u8],
    /// `file:line`.
    pub place: &'a [u8],
    pub object: &'static [u8],
}

/// Bytes of addr2line's answers kept for one stack.
const ANSWER_BYTES: usize = 256 << 10;

/// Calls `each(index, address, frame)` for every frame of `stack`, innermost first. Symbols
/// come from `dladdr`; functions and lines from `addr2line`, run once per object the stack
/// passes through (each run loads the object's debug information, which is what takes time).
pub fn describe_each(stack: &Stack, mut each: impl FnMut(usize, usize, &Frame)) {
    let frames = stack.frames();
    let mut infos = [Located::UNKNOWN; crate::platform::unwind::MAX_DEPTH];
    for (info, &address) in infos.iter_mut().zip(frames) {
        *info = Located::of(address);
    }
    let infos = &infos[..frames.len()];
    // Answers land in memory of our own (BT2): this may run on a small thread stack.
    let memory = crate::platform::os::reserve_metadata(ANSWER_BYTES);
    let answers: &mut [u8] = match memory {
        // SAFETY: a fresh mapping of ANSWER_BYTES, ours until released below.
        Some(memory) => unsafe { core::slice::from_raw_parts_mut(memory.as_ptr(), ANSWER_BYTES) },
        None => &mut [],
    };
    // Each frame's (function, place) as ranges of `answers`.
    let mut found: [(core::ops::Range<usize>, core::ops::Range<usize>);
        crate::platform::unwind::MAX_DEPTH] = core::array::from_fn(|_| (0..0, 0..0));
    let mut asked = [false; crate::platform::unwind::MAX_DEPTH];
    let mut used = 0;
    for first in 0..infos.len() {
        if asked[first] || infos[first].object.is_empty() {
            continue;
        }
        // Every frame of this object, in one run.
        let mut batch = [0usize; crate::platform::unwind::MAX_DEPTH];
        let mut offsets = [0usize; crate::platform::unwind::MAX_DEPTH];
        let mut count = 0;
        for (index, info) in infos.iter().enumerate().skip(first) {
            if !asked[index] && info.base == infos[first].base {
                asked[index] = true;
                batch[count] = index;
                offsets[count] = info.offset;
                count += 1;
            }
        }
        let filled = run_addr2line(infos[first].path, &offsets[..count], &mut answers[used..]);
        // The parser's ranges are within this run's answer, which starts at `used`.
        let shift = |range: core::ops::Range<usize>| range.start + used..range.end + used;
        for (index, (function, place)) in parse_answers(&answers[used..used + filled]) {
            if let Some(&frame) = batch[..count].get(index) {
                found[frame] = (shift(function), shift(place));
            }
        }
        used += filled;
    }
    for (index, (&address, info)) in frames.iter().zip(infos).enumerate() {
        let (function, place) = found[index].clone();
        let function = &answers[function];
        let frame = Frame {
            function: if function.is_empty() {
                info.symbol
            } else {
                function
            },
            place: &answers[place],
            object: info.object,
        };
        each(index, address, &frame);
    }
    if let Some(memory) = memory {
        // SAFETY: mapped above, and no longer read.
        unsafe { crate::platform::os::release(memory, ANSWER_BYTES) };
    }
}

/// Where the loader places one return address.
#[derive(Clone, Copy)]
struct Located {
    object: &'static [u8],
    /// The object's name, NUL-terminated (for addr2line).
    path: *const libc::c_char,
    symbol: &'static [u8],
    base: usize,
    /// What addr2line is asked for: the call's offset in a shared object or
    /// position-independent program, its address in a fixed-address one.
    offset: usize,
}

impl Located {
    const UNKNOWN: Located = Located {
        object: &[],
        path: core::ptr::null(),
        symbol: &[],
        base: 0,
        offset: 0,
    };

    fn of(address: usize) -> Located {
        // A return address points after the call: look up the call itself.
        let lookup = address.saturating_sub(1);
        // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-parameter.
        let info = unsafe { object_of(lookup) };
        if info.dli_fname.is_null() {
            return Located::UNKNOWN;
        }
        // SAFETY: dladdr gives NUL-terminated names that live as long as their object (loaded
        // objects this report names stay loaded while it prints).
        let name = |pointer: *const libc::c_char| -> &'static [u8] {
            if pointer.is_null() {
                &[]
            } else {
                // SAFETY: as said above the closure.
                unsafe { core::ffi::CStr::from_ptr(pointer) }.to_bytes()
            }
        };
        let base = info.dli_fbase as usize;
        // Fixed-address programs (ELF type EXEC) are looked up by address.
        // SAFETY: `base` is where the loader mapped the object, ELF header first.
        let fixed = base != 0 && unsafe { *((base + 16) as *const u16) } == 2;
        Located {
            object: name(info.dli_fname),
            path: info.dli_fname,
            symbol: name(info.dli_sname),
            base,
            offset: if fixed { lookup } else { lookup - base },
        }
    }
}

/// Runs `addr2line -afiCe OBJECT OFFSET...` and reads its answer into `out`; returns the bytes
/// read (BT2).
fn run_addr2line(object: *const libc::c_char, offsets: &[usize], out: &mut [u8]) -> usize {
    const FIXED: usize = 3;
    let mut hex = [[0u8; 20]; crate::platform::unwind::MAX_DEPTH];
    let mut arguments =
        [core::ptr::null::<libc::c_char>(); FIXED + crate::platform::unwind::MAX_DEPTH + 1];
    let program = c"addr2line";
    arguments[0] = program.as_ptr();
    arguments[1] = c"-afiCe".as_ptr();
    arguments[2] = object;
    for (index, &offset) in offsets.iter().enumerate() {
        let text = &mut hex[index];
        text[0] = b'0';
        text[1] = b'x';
        let digits = (usize::BITS - offset.leading_zeros()).div_ceil(4).max(1) as usize;
        for digit in 0..digits {
            text[2 + digit] = b"0123456789abcdef"[(offset >> ((digits - 1 - digit) * 4)) & 0xf];
        }
        text[2 + digits] = 0;
    }
    for (argument, text) in arguments[FIXED..].iter_mut().zip(&hex[..offsets.len()]) {
        *argument = text.as_ptr().cast();
    }
    let mut pipe = [0 as c_int; 2];
    // SAFETY: `pipe` is a valid out-parameter for two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return 0;
    }
    // BT2: not `fork`.
    let child = crate::platform::os::fork_without_handlers();
    if child == 0 {
        // SAFETY: in the child: route stdout into the pipe, silence stderr, become addr2line.
        unsafe {
            libc::dup2(pipe[1], 1);
            libc::close(pipe[0]);
            libc::close(2);
            // An empty environment: addr2line must not load the allocator (nor report at its
            // own exit, which would run addr2line again).
            let environment: [*const libc::c_char; 1] = [core::ptr::null()];
            libc::execvpe(program.as_ptr(), arguments.as_ptr(), environment.as_ptr());
            libc::_exit(127);
        }
    }
    // SAFETY: our end of the pipe; the child's is closed here so that reading sees its end.
    unsafe { libc::close(pipe[1]) };
    let mut filled = 0;
    if child > 0 {
        while filled < out.len() {
            // SAFETY: reading into the rest of `out`.
            let read = unsafe {
                libc::read(
                    pipe[0],
                    out[filled..].as_mut_ptr().cast(),
                    out.len() - filled,
                )
            };
            if read <= 0 {
                break;
            }
            filled += read as usize;
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
    }
    // SAFETY: our end of the pipe.
    unsafe { libc::close(pipe[0]) };
    filled
}

/// Splits addr2line's answer for several addresses: each is a line `0x...` followed by pairs
/// of lines, a function then its file:line (with " (discriminator N)" at times), from the
/// innermost inlined function out to the one the address is in; "??" means unknown. Yields,
/// per address in order, the outermost pair: the frame's own function, with the line of the
/// call it inlined (for an allocation, the line that allocated rather than the allocator's
/// inlined fast path).
fn parse_answers(
    text: &[u8],
) -> impl Iterator<Item = (usize, (core::ops::Range<usize>, core::ops::Range<usize>))> + '_ {
    let mut lines = Lines { text, at: 0 }.peekable();
    let mut index = 0usize;
    core::iter::from_fn(move || {
        // To the next address line.
        loop {
            let line = lines.next()?;
            if text[line.clone()].starts_with(b"0x") {
                break;
            }
        }
        let mut last = (0..0, 0..0);
        while let Some(next) = lines.peek() {
            if text[next.clone()].starts_with(b"0x") {
                break;
            }
            let function = lines.next().unwrap_or(0..0);
            let place = lines.next().unwrap_or(0..0);
            last = (function, place);
        }
        let (function, place) = last;
        let place = place.start
            ..text[place.clone()]
                .iter()
                .position(|&b| b == b' ')
                .map_or(place.end, |space| place.start + space);
        let known = |range: core::ops::Range<usize>| {
            if text[range.clone()].starts_with(b"??") {
                0..0
            } else {
                range
            }
        };
        let item = (index, (known(function), known(place)));
        index += 1;
        Some(item)
    })
}

/// The lines of `text`, as ranges.
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
}

impl Iterator for Lines<'_> {
    type Item = core::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.text.len() {
            return None;
        }
        let start = self.at;
        let end = self.text[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.text.len(), |newline| start + newline);
        self.at = end + 1;
        Some(start..end)
    }
}

/// `stack` from its first frame outside the allocator: frames of `libtallymalloc.so`, or of
/// functions named `tallymalloc...` when the allocator is linked into the program.
pub fn outside_allocator(stack: &Stack) -> Stack {
    // SAFETY: dladdr only reads the loader's tables.
    let own = unsafe { object_of(outside_allocator as *const () as usize) };
    let first = stack
        .frames()
        .iter()
        .position(|&address| !is_allocator_frame(address, own))
        .unwrap_or(stack.depth());
    Stack::from_frames(&stack.frames()[first..])
}

/// The loader's record of the object holding `address`.
///
/// # Safety
/// None: dladdr fails cleanly for any address.
unsafe fn object_of(address: usize) -> libc::Dl_info {
    // SAFETY: a zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: see above.
    unsafe { libc::dladdr(address as *const c_void, &mut info) };
    info
}

fn is_allocator_frame(address: usize, own: libc::Dl_info) -> bool {
    // SAFETY: as in `object_of`.
    let info = unsafe { object_of(address.saturating_sub(1)) };
    let named = |pointer: *const libc::c_char| {
        // SAFETY: dladdr's names are NUL-terminated and live as long as their object.
        (!pointer.is_null()).then(|| unsafe { core::ffi::CStr::from_ptr(pointer) }.to_bytes())
    };
    let own_library =
        named(own.dli_fname).is_some_and(|name| name.windows(14).any(|w| w == b"libtallymalloc"));
    if own_library && info.dli_fbase == own.dli_fbase {
        return true;
    }
    named(info.dli_sname).is_some_and(|name| name.windows(11).any(|w| w == b"tallymalloc"))
}
