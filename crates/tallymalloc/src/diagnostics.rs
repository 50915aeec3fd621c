//! Messages on stderr, written without allocating (the allocator may be the process's malloc).

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
    write_stderr(b"tallymalloc: ignoring ");
    write_stderr(name);
    write_stderr(b"=");
    write_stderr(value);
    write_stderr(b": expected ");
    write_stderr(expected);
    write_stderr(b"\n");
}

/// Reports a broken invariant (heap corruption) and aborts: continuing would spread the damage.
#[cold]
pub fn fatal(message: &[u8]) -> ! {
    write_stderr(b"tallymalloc: fatal: ");
    write_stderr(message);
    write_stderr(b"\n");
    // SAFETY: abort has no preconditions and never returns.
    unsafe { libc::abort() }
}
