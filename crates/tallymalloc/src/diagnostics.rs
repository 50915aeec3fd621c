//! Messages on stderr, composed in a fixed stack buffer and written with one `write`: the
//! allocator may be the process's malloc, so nothing here may allocate.

use core::sync::atomic::{AtomicUsize, Ordering};

/// `value` in decimal, written at the end of `digits`; returns the digits.
pub fn decimal_digits(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &digits[start..]
}

/// A line being composed; text past its capacity is cut.
pub struct Line {
    bytes: [u8; 512],
    length: usize,
}

impl Line {
    pub fn new() -> Line {
        Line {
            bytes: [0; 512],
            length: 0,
        }
    }

    pub fn text(&mut self, text: &[u8]) -> &mut Line {
        let room = self.bytes.len() - self.length;
        let taken = text.len().min(room);
        self.bytes[self.length..self.length + taken].copy_from_slice(&text[..taken]);
        self.length += taken;
        self
    }

    pub fn decimal(&mut self, value: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        self.text(decimal_digits(value, &mut digits))
    }

    pub fn hex(&mut self, value: usize) -> &mut Line {
        let mut digits = [0u8; 18];
        let mut start = digits.len();
        let mut rest = value;
        loop {
            start -= 1;
            digits[start] = b"0123456789abcdef"[rest & 15];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        start -= 2;
        digits[start] = b'0';
        digits[start + 1] = b'x';
        self.text(&digits[start..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }

    pub fn write_to_stderr(&self) {
        write_stderr(self.as_bytes());
    }
}

/// Writes raw bytes to stderr, ignoring failure (there is nowhere else to report it).
pub fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid readable slice.
        let written = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if written <= 0 {
            return;
        }
        rest = &rest[written as usize..];
    }
}

/// One line: `tallymalloc: ignoring NAME=VALUE: expected EXPECTED`.
pub fn warn_bad_option(name: &[u8], value: &[u8], expected: &[u8]) {
    let mut line = Line::new();
    line.text(b"tallymalloc: ignoring ")
        .text(name)
        .text(b"=")
        .text(value)
        .text(b": expected ")
        .text(expected)
        .text(b"\n");
    line.write_to_stderr();
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
    if crate::debug::active() {
        INVALID_POINTERS.fetch_add(1, Ordering::Relaxed);
        return crate::debug::report_invalid(function, address);
    }
    report_pointer(function, address, b"not allocated by tallymalloc", None);
}

/// Reports that `function` was given `address`, which lies in tallymalloc's memory but starts
/// no block (inside one, in a page's slack, in a segment's header): one line, then it is
/// ignored, as an invalid pointer is. Secure mode and the hardened build abort, as for a double
/// free; so does `TALLYMALLOC_ON_ERROR=abort`. (Debug mode reports these itself, with stacks.)
#[cold]
pub fn report_not_a_block_start(function: &[u8], address: usize) {
    let secure = crate::secure::active().then_some(b"aborting: secure mode".as_slice());
    let what = b"inside tallymalloc's memory, not the start of a block";
    report_pointer(function, address, what, secure);
}

/// One line naming `function`, `address` and `what` is wrong with it; then an abort for
/// `forced_abort`'s reason, or for `TALLYMALLOC_ON_ERROR=abort`, or the pointer is ignored.
fn report_pointer(function: &[u8], address: usize, what: &[u8], forced_abort: Option<&[u8]>) {
    INVALID_POINTERS.fetch_add(1, Ordering::Relaxed);
    let on_error_abort = crate::options::on_error() == crate::options::OnError::Abort;
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

/// Reports a broken invariant (heap corruption) and aborts: continuing would spread the damage.
#[cold]
pub fn fatal(message: &[u8]) -> ! {
    let mut line = Line::new();
    line.text(b"tallymalloc: fatal: ").text(message).text(b"\n");
    line.write_to_stderr();
    abort_process()
}

/// Ends the process at once, as a failed check must.
pub fn abort_process() -> ! {
    // SAFETY: abort has no preconditions and never returns.
    unsafe { libc::abort() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_format_numbers_without_allocating() {
        let mut line = Line::new();
        line.text(b"a ")
            .decimal(0)
            .text(b" ")
            .decimal(18446744073709551615);
        line.text(b" ").hex(0).text(b" ").hex(0xdead_beef);
        assert_eq!(line.as_bytes(), b"a 0 18446744073709551615 0x0 0xdeadbeef");
    }

    #[test]
    fn overlong_lines_are_cut_not_overflowed() {
        let mut line = Line::new();
        for _ in 0..100 {
            line.text(b"0123456789");
        }
        assert_eq!(line.as_bytes().len(), 512);
    }
}
