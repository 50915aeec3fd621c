//! Call stacks captured fast: the return addresses of the calling thread's frames, found by
//! stepping from frame to frame with rules read once from each object's call frame
//! information and cached by code address (`rules.rs`, `objects.rs`). Frames with a frame
//! pointer and frames without one take the same step, each by its own rule; a frame whose
//! rule this walk cannot follow (a DWARF expression, as in a signal trampoline) hands the
//! whole stack to libgcc's unwinder (`_Unwind_Backtrace`), which is slower and complete.
//!
//! `sites.rs` numbers the distinct stacks captured, for debug mode's blocks and the profile's
//! samples alike.
//!
//! Debug mode captures a stack for every allocation and for every free it quarantines, so the
//! walk's cost is debug mode's: with the cache warm, a frame is a hash, two loads for the rule
//! and two for the frame's saved words.
//!
//! Invariants:
//! - **UW1**: capturing allocates nothing and takes no lock once the cache holds the stack's
//!   rules; a miss asks the loader (`dl_iterate_phdr`, its lock, no malloc).
//! - **UW2**: the walk reads only words within its own thread's stack as the rules describe it:
//!   each frame's CFA lies above the last one's and within `MAX_SPAN` of where the walk started,
//!   or the walk ends there.

mod objects;
pub use objects::code_at;
mod rules;
pub mod sites;

use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;

/// Frames a stack can hold.
pub const MAX_DEPTH: usize = 64;

/// How far above its start a walk reads; a CFA beyond it ends the walk (UW2).
const MAX_SPAN: usize = 64 << 20;

/// A captured stack: the return addresses of its frames, innermost first. Only the first
/// `depth` slots are ever written or read, so making one costs nothing.
#[derive(Clone, Copy)]
pub struct Stack {
    frames: [MaybeUninit<usize>; MAX_DEPTH],
    depth: usize,
}

impl Stack {
    pub const EMPTY: Stack = Stack {
        frames: [MaybeUninit::uninit(); MAX_DEPTH],
        depth: 0,
    };

    /// An empty stack, made without touching its frames: copying [`Stack::EMPTY`] cost a
    /// 512-byte `memset` (the compiler filled the uninitialised frames).
    #[inline(always)]
    pub fn new() -> Stack {
        Stack {
            // SAFETY: an array of `MaybeUninit` needs no initialisation.
            frames: unsafe { MaybeUninit::uninit().assume_init() },
            depth: 0,
        }
    }

    /// A stack of these frames (at most [`MAX_DEPTH`] of them are kept).
    pub fn from_frames(frames: &[usize]) -> Stack {
        let mut stack = Stack::EMPTY;
        let mut skip = 0;
        for &frame in frames {
            if !stack.push(frame, &mut skip, MAX_DEPTH) {
                break;
            }
        }
        stack
    }

    pub fn frames(&self) -> &[usize] {
        // SAFETY: the first `depth` slots were written by `push`.
        unsafe { core::slice::from_raw_parts(self.frames.as_ptr().cast(), self.depth) }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Adds a frame unless `skip` says to pass it by; true while there is room for more.
    #[inline(always)]
    fn push(&mut self, address: usize, skip: &mut usize, limit: usize) -> bool {
        if *skip > 0 {
            *skip -= 1;
            return true;
        }
        self.frames[self.depth] = MaybeUninit::new(address);
        self.depth += 1;
        self.depth < limit
    }
}

impl Default for Stack {
    fn default() -> Stack {
        Stack::new()
    }
}

impl PartialEq for Stack {
    fn eq(&self, other: &Stack) -> bool {
        self.frames() == other.frames()
    }
}

impl Eq for Stack {}

/// The calling thread's stack, less its `skip` innermost frames (the allocator's own), at most
/// `depth` frames (up to [`MAX_DEPTH`]).
#[inline(always)]
pub fn capture(skip: usize, depth: usize) -> Stack {
    let mut stack = Stack::new();
    capture_into(&mut stack, skip, depth);
    stack
}

/// [`capture`] into `stack`, which the caller keeps where it wants it: a stack is 520 bytes,
/// and copying one out cost as much as walking a short stack. Inlined, so that it adds no
/// frame for the walk to step through: the walk's first step lands in the caller.
#[inline(always)]
pub fn capture_into(stack: &mut Stack, skip: usize, depth: usize) {
    let depth = depth.clamp(1, MAX_DEPTH);
    #[cfg(target_arch = "x86_64")]
    if walk(stack, skip, depth) {
        return;
    }
    *stack = Stack::EMPTY;
    capture_with_libgcc(stack, skip, depth);
}

/// Walks by cached rules from its own frame outward; false if a frame needs libgcc.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn walk(stack: &mut Stack, mut skip: usize, depth: usize) -> bool {
    let (mut pc, mut sp, mut fp): (usize, usize, usize);
    // SAFETY: reads three registers; the CFI row at the next instruction describes this frame
    // with exactly these values of rsp and rbp.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {fp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            fp = out(reg) fp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let limit = sp.saturating_add(MAX_SPAN);
    let mut depth_now = 0;
    // The first pc is the instruction itself; later ones are return addresses, whose call is
    // the byte before.
    let mut lookup = pc;
    let ended = loop {
        let rule = rules::rule_at(lookup);
        if rule.stops() {
            if rule.is_unsupported() {
                return false;
            }
            break true;
        }
        let base = if rule.base_is_rbp() { fp } else { sp };
        let cfa = base.wrapping_add_signed(rule.cfa_offset());
        // UW2.
        if cfa <= sp || cfa > limit {
            break true;
        }
        // SAFETY: UW2: `cfa` is above the previous frame and within the span of this
        // thread's stack the walk allows, and the rule places both saved words below it, in
        // the frame being left.
        unsafe {
            pc = *(cfa.wrapping_add_signed(rules::RETURN_ADDRESS_AT) as *const usize);
            let rbp_at = rule.rbp_saved_at();
            if rbp_at != 0 {
                fp = *(cfa.wrapping_add_signed(rbp_at) as *const usize);
            }
        }
        sp = cfa;
        if pc == 0 {
            break true;
        }
        if skip > 0 {
            skip -= 1;
        } else {
            // `depth_now < depth <= MAX_DEPTH`.
            // SAFETY: as just said, the slot is in the array.
            unsafe { *stack.frames.get_unchecked_mut(depth_now) = MaybeUninit::new(pc) };
            depth_now += 1;
            if depth_now == depth {
                break true;
            }
        }
        lookup = pc - 1;
    };
    stack.depth = depth_now;
    ended
}

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(context: *mut c_void, data: *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(context: *mut c_void) -> usize;
}

struct LibgccCapture<'a> {
    stack: &'a mut Stack,
    skip: usize,
    depth: usize,
}

extern "C" fn visit(context: *mut c_void, data: *mut c_void) -> c_int {
    const URC_NO_REASON: c_int = 0;
    const URC_END_OF_STACK: c_int = 5;
    // SAFETY: `data` is the `LibgccCapture` passed below, alive for the whole walk.
    let capture = unsafe { &mut *data.cast::<LibgccCapture>() };
    // SAFETY: the unwinder passes a valid context.
    let address = unsafe { _Unwind_GetIP(context) };
    if address == 0
        || !capture
            .stack
            .push(address, &mut capture.skip, capture.depth)
    {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// libgcc's walk, which reads every frame's tables afresh (through `dl_iterate_phdr`, no
/// malloc: UW1) and understands every rule.
#[inline(never)]
fn capture_with_libgcc(stack: &mut Stack, skip: usize, depth: usize) {
    // The first frame libgcc reports is this function's own.
    let mut capture = LibgccCapture {
        stack,
        skip: skip + 1,
        depth,
    };
    // SAFETY: `visit` only touches the capture, which outlives the call.
    unsafe { _Unwind_Backtrace(visit, (&raw mut capture).cast()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(levels: usize, through: fn() -> Stack) -> Stack {
        if levels == 0 {
            through()
        } else {
            // Kept a real call (not a tail call) by using the result.
            let stack = nested(levels - 1, through);
            core::hint::black_box(stack)
        }
    }

    fn fast() -> Stack {
        capture(0, MAX_DEPTH)
    }

    fn libgcc() -> Stack {
        let mut stack = Stack::EMPTY;
        capture_with_libgcc(&mut stack, 0, MAX_DEPTH);
        stack
    }

    #[test]
    fn the_cached_walk_finds_the_frames_libgcc_finds() {
        let ours = nested(10, fast);
        let theirs = nested(10, libgcc);
        // The innermost frames differ (each walk's own), and so does this function's return
        // address (two calls); the ten `nested` frames and everything outside this function
        // are the same.
        let from_nested = |stack: &Stack| {
            let frames = stack.frames();
            let first = frames
                .iter()
                .position(|&a| frames.iter().filter(|&&b| b == a).count() > 1)
                .expect("recursive frames repeat their return address");
            let mut kept = frames[first..].to_vec();
            kept.remove(10);
            kept
        };
        assert!(ours.depth() > 12, "depth {}", ours.depth());
        assert_eq!(from_nested(&ours), from_nested(&theirs));
    }

    #[test]
    fn depth_and_skip_are_kept() {
        let all = capture(0, MAX_DEPTH);
        let some = capture(0, 3);
        assert_eq!(some.depth(), 3);
        let skipped = capture(1, MAX_DEPTH);
        // The first of `all` is this function's call; `skipped` starts with its caller.
        assert_eq!(skipped.frames(), &all.frames()[1..]);
    }
}
