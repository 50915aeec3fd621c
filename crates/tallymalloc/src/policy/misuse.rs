//! Reports of the pointers a program hands the allocator wrongly (never allocated, or not the
//! start of a block) and of unknown domains: one line on stderr each, composed without
//! allocating (`platform/text.rs`), then the abort the options ask for. Debug mode, when on,
//! reports invalid pointers itself, with stacks: it registers its reporter here
//! ([`report_invalid_pointers_with`]), so this policy knows nothing of debug mode.

use crate::platform::text::{fatal, Line};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Debug mode's reporter of invalid pointers, once it is on (a `fn(&[u8], usize)`), or null.
static DETAILED_REPORTER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Has `reporter` report every invalid pointer from now on (debug mode, as it turns on).
pub fn report_invalid_pointers_with(reporter: fn(&[u8], usize)) {
    DETAILED_REPORTER.store(reporter as *mut (), Ordering::Release);
}

static INVALID_POINTERS: AtomicUsize = AtomicUsize::new(0);

/// How many invalid pointers the program has handed to the allocator so far.
pub fn invalid_pointer_count() -> usize {
    INVALID_POINTERS.load(Ordering::Relaxed)
}

/// Reports that `function` was given `address`, which the allocator never handed out: one
/// line, then the process aborts if `TALLYMALLOC_ON_ERROR=abort`.
#[cold]
pub fn report_invalid_pointer(function: &[u8], address: usize) {
    let reporter = DETAILED_REPORTER.load(Ordering::Acquire);
    if !reporter.is_null() {
        INVALID_POINTERS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: only `report_invalid_pointers_with` stores here, and it stores that type.
        let reporter: fn(&[u8], usize) = unsafe { core::mem::transmute(reporter) };
        return reporter(function, address);
    }
    report_pointer(function, address, b"not allocated by tallymalloc", None);
}

/// Reports that `function` was given `address`, which lies in tallymalloc's memory but starts
/// no block (inside one, in a page's slack, in a segment's header): one line, then it is
/// ignored, as an invalid pointer is. Secure mode and the hardened build abort, as for a double
/// free; so does `TALLYMALLOC_ON_ERROR=abort`. (Debug mode reports these itself, with stacks.)
#[cold]
pub fn report_not_a_block_start(function: &[u8], address: usize) {
    let secure = crate::policy::secure::active().then_some(b"aborting: secure mode".as_slice());
    let what = b"inside tallymalloc's memory, not the start of a block";
    report_pointer(function, address, what, secure);
}

/// One line naming `function`, `address` and `what` is wrong with it; then an abort for
/// `forced_abort`'s reason, or for `TALLYMALLOC_ON_ERROR=abort`, or the pointer is ignored.
fn report_pointer(function: &[u8], address: usize, what: &[u8], forced_abort: Option<&[u8]>) {
    INVALID_POINTERS.fetch_add(1, Ordering::Relaxed);
    let on_error_abort =
        crate::policy::options::on_error() == crate::policy::options::OnError::Abort;
    let mut line = Line::new();
    line.text(b"tallymalloc: ")
        .text(function)
        .text(b"(): invalid pointer ")
        .hex(address)
        .text(b" (")
        .text(what)
        .text(if forced_abort.is_some() || on_error_abort {
            b")\n".as_slice()
        } else {
            b"; ignored)\n".as_slice()
        });
    line.write_to_stderr();
    if let Some(reason) = forced_abort {
        fatal(reason);
    }
    if on_error_abort {
        fatal(b"aborting: TALLYMALLOC_ON_ERROR=abort");
    }
}

/// Reports that `function` was given `id`, which names no registered domain; the caller then
/// does what its contract says (a free still frees the block through its own family).
#[cold]
pub fn report_unknown_domain(function: &[u8], id: i64) {
    let mut line = Line::new();
    line.text(b"tallymalloc: ")
        .text(function)
        .text(b"(): no domain ");
    if id < 0 {
        line.text(b"-");
    }
    line.decimal(id.unsigned_abs())
        .text(b"; the block was freed through its own family\n");
    line.write_to_stderr();
}
