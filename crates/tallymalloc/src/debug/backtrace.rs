//! Call stacks for debug mode's reports: return addresses captured with the C++ ABI's unwinder
//! (`_Unwind_Backtrace`, from libgcc_s, which walks `.eh_frame` and needs no frame pointers),
//! and symbolised only when a report is printed: `dladdr` names the function and object, and
//! `addr2line`, run as a child process, gives the file and line.
//!
//! Invariants:
//! - **BT1**: capturing allocates nothing (the unwinder finds frames through
//!   `dl_iterate_phdr`, which does not call malloc).
//! - **BT2**: printing allocates nothing in this process and takes no lock: the child is
//!   started as `fork` would, but without the fork handlers (which take the allocator's locks,
//!   one of which the report may hold), then `execvpe` (no posix_spawn file actions, which
//!   would call malloc) in an empty environment (so it does not load the allocator itself), and
//!   its output is read into a buffer on the stack.

use crate::platform::text::Line;
use core::ffi::{c_int, c_void};

/// Frames kept per stack.
pub const DEPTH: usize = 24;

/// A captured stack: the return addresses of its frames, innermost first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    pub frames: [usize; DEPTH],
    pub depth: usize,
}

impl Stack {
    pub const EMPTY: Stack = Stack {
        frames: [0; DEPTH],
        depth: 0,
    };

    pub fn frames(&self) -> &[usize] {
        &self.frames[..self.depth]
    }
}

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(context: *mut c_void, data: *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
}

struct Capture {
    stack: Stack,
    skip: usize,
}

extern "C" fn visit(context: *mut c_void, data: *mut c_void) -> c_int {
    const URC_NO_REASON: c_int = 0;
    const URC_END_OF_STACK: c_int = 5;
    // SAFETY: `data` is the `Capture` `capture` passed, alive for the whole walk.
    let capture = unsafe { &mut *data.cast::<Capture>() };
    // SAFETY: the unwinder passes a valid context.
    let address = unsafe { _Unwind_GetIP(context) };
    if address == 0 {
        return URC_END_OF_STACK;
    }
    if capture.skip > 0 {
        capture.skip -= 1;
        return URC_NO_REASON;
    }
    let stack = &mut capture.stack;
    stack.frames[stack.depth] = address;
    stack.depth += 1;
    if stack.depth == DEPTH {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// The calling thread's stack, less its `skip` innermost frames (the allocator's own).
#[inline(never)]
pub fn capture(skip: usize) -> Stack {
    let mut capture = Capture {
        stack: Stack::EMPTY,
        skip: skip + 1,
    };
    // SAFETY: `visit` only touches the capture, which outlives the call (BT1).
    unsafe { _Unwind_Backtrace(visit, (&raw mut capture).cast()) };
    capture.stack
}

/// Prints `stack` on stderr, one frame a line: function, object, and file:line when
/// `addr2line` knows them.
pub fn print(stack: &Stack) {
    for (index, &address) in stack.frames().iter().enumerate() {
        let mut text = [0u8; 4096];
        let frame = describe(address, &mut text);
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
    }
}

/// What is known of one frame; each part empty when unknown.
pub struct Frame<'a> {
    pub function: &'a [u8],
    /// `file:line`.
    pub place: &'a [u8],
    pub object: &'static [u8],
}

/// Names the frame at return address `address`, using `text` for addr2line's answer.
pub fn describe(address: usize, text: &mut [u8]) -> Frame<'_> {
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // A return address points after the call: look up the call itself.
    let lookup = address.saturating_sub(1);
    // SAFETY: as above.
    let found = unsafe { libc::dladdr(lookup as *const c_void, &mut info) } != 0;
    // SAFETY: dladdr gives NUL-terminated names that live as long as their object (loaded
    // objects this report names stay loaded while it prints).
    let name = |pointer: *const libc::c_char| -> &'static [u8] {
        if !found || pointer.is_null() {
            &[]
        } else {
            // SAFETY: as said above the closure: a NUL-terminated name of a loaded object.
            unsafe { core::ffi::CStr::from_ptr(pointer) }.to_bytes()
        }
    };
    let (object, symbol) = (name(info.dli_fname), name(info.dli_sname));
    let (function, place) = if object.is_empty() {
        (&[][..], &[][..])
    } else {
        // SAFETY: as above: a NUL-terminated name.
        let object = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) };
        source_line(object, info.dli_fbase as usize, lookup, text)
    };
    Frame {
        function: if function.is_empty() {
            symbol
        } else {
            function
        },
        place,
        object,
    }
}

/// The function and `file:line` of `address` in `object` (loaded at `base`), from
/// `addr2line -f -C`, read into `out`; each empty if unknown (BT2).
fn source_line<'a>(
    object: &core::ffi::CStr,
    base: usize,
    address: usize,
    out: &'a mut [u8],
) -> (&'a [u8], &'a [u8]) {
    // Shared objects and position-independent programs are looked up by offset; fixed-address
    // programs (ELF type EXEC) by address.
    // SAFETY: `base` is where the loader mapped the object, ELF header first.
    let fixed = base != 0 && unsafe { *((base + 16) as *const u16) } == 2;
    let offset = if fixed { address } else { address - base };
    let mut hex = [0u8; 20];
    let mut length = 0;
    hex[length] = b'0';
    hex[length + 1] = b'x';
    length += 2;
    let digits = (usize::BITS - offset.leading_zeros()).div_ceil(4).max(1) as usize;
    for index in (0..digits).rev() {
        hex[length] = b"0123456789abcdef"[(offset >> (index * 4)) & 0xf];
        length += 1;
    }
    hex[length] = 0;
    let mut pipe = [0 as c_int; 2];
    // SAFETY: `pipe` is a valid out-parameter for two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return (&[], &[]);
    }
    let program = c"addr2line";
    let arguments: [*const libc::c_char; 6] = [
        program.as_ptr(),
        c"-fiCe".as_ptr(),
        object.as_ptr(),
        hex.as_ptr().cast(),
        core::ptr::null(),
        core::ptr::null(),
    ];
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
    // Pairs of lines, a function then its file:line (with " (discriminator N)" at times), from
    // the innermost inlined function out to the one the address is in; "??" means unknown.
    // The outermost is the frame's own function, with the line of the call it inlined: for
    // an allocation, the line that allocated, rather than the allocator's inlined fast path.
    let text = &out[..filled];
    let lines: [&[u8]; 64] = {
        let mut lines: [&[u8]; 64] = [&[]; 64];
        for (slot, line) in lines.iter_mut().zip(text.split(|&b| b == b'\n')) {
            *slot = line;
        }
        lines
    };
    let count = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        .min(64);
    let pair = (count / 2).max(1) - 1;
    let function = lines[pair * 2];
    let place = lines[pair * 2 + 1];
    let place = &place[..place.iter().position(|&b| b == b' ').unwrap_or(place.len())];
    let known = |part: &'a [u8]| {
        if part.starts_with(b"??") {
            &[][..]
        } else {
            part
        }
    };
    (known(function), known(place))
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
        .unwrap_or(stack.depth);
    let mut trimmed = Stack::EMPTY;
    for (slot, &address) in trimmed.frames.iter_mut().zip(&stack.frames()[first..]) {
        *slot = address;
    }
    trimmed.depth = stack.depth - first;
    trimmed
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
