//! Text without allocating: decimal numbers in and out, lines composed in a fixed stack buffer
//! and written to stderr with `write`, and the abort that ends a failed check. The allocator
//! may be the process's malloc, so nothing here may allocate.

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

/// A line being composed; text past its capacity is cut. It is also a `core::fmt::Write`, for
/// a value's `Debug` form (formatting into it allocates nothing).
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

impl core::fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.text(text.as_bytes());
        Ok(())
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

/// The whole number `text` spells in decimal, if it is one and at most `max`; `None` for an
/// empty text, any other character, or a larger number.
pub fn parse_decimal(text: &[u8], max: u64) -> Option<u64> {
    let mut value: u64 = 0;
    for &digit in text {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add((digit - b'0') as u64)?;
    }
    (!text.is_empty() && value <= max).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_decimal_takes_only_whole_numbers_up_to_the_bound() {
        assert_eq!(parse_decimal(b"1234", u64::MAX), Some(1234));
        assert_eq!(
            parse_decimal(b"18446744073709551615", u64::MAX),
            Some(u64::MAX)
        );
        assert_eq!(parse_decimal(b"18446744073709551616", u64::MAX), None);
        assert_eq!(parse_decimal(b"100", 99), None);
        assert_eq!(parse_decimal(b"", u64::MAX), None);
        assert_eq!(parse_decimal(b"12a", u64::MAX), None);
        assert_eq!(parse_decimal(b"-1", u64::MAX), None);
    }

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
