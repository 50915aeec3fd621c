//! Which process a stats document describes: its pid, the parent that started it, and its
//! command line, so that `tallymalloc run` can show a tree of the processes a program started.
//!
//! The parent is the one at start-up (or at `fork`, for a forked child), not at exit: a child
//! whose parent exited first is still shown under it.
//!
//! Invariants:
//! - **ID1 no allocation**: the command line is read into a fixed buffer on the caller's stack,
//!   cut at [`COMMAND_MAX`] bytes.

use core::sync::atomic::{AtomicI32, Ordering};

/// The longest command line a document carries, in bytes; longer ones are cut.
pub const COMMAND_MAX: usize = 256;

static PARENT_PID: AtomicI32 = AtomicI32::new(0);

/// Remembers the parent (process set-up, and a forked child).
pub fn note_parent() {
    // SAFETY: getppid has no preconditions.
    PARENT_PID.store(unsafe { libc::getppid() }, Ordering::Relaxed);
}

/// The process's id.
pub fn pid() -> u64 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u64 }
}

/// The parent at start-up or fork; the current one if the allocator never started.
pub fn parent_pid() -> u64 {
    match PARENT_PID.load(Ordering::Relaxed) {
        // SAFETY: getppid has no preconditions.
        0 => unsafe { libc::getppid() as u64 },
        parent => parent as u64,
    }
}

/// A command line as `/proc/self/cmdline` gives it, its arguments joined by spaces, cut at
/// 256 bytes (`COMMAND_MAX`). Not necessarily UTF-8: writers escape it.
#[derive(Clone, Copy)]
pub struct CommandLine {
    bytes: [u8; COMMAND_MAX],
    length: usize,
}

impl CommandLine {
    pub const fn empty() -> CommandLine {
        CommandLine {
            bytes: [0; COMMAND_MAX],
            length: 0,
        }
    }

    /// The longest a command line can be written as JSON: every byte a control character.
    pub(crate) const fn widest() -> CommandLine {
        CommandLine {
            bytes: [1; COMMAND_MAX],
            length: COMMAND_MAX,
        }
    }

    /// This process's command line; empty if `/proc` cannot tell (ID1).
    pub fn of_this_process() -> CommandLine {
        let mut line = CommandLine::empty();
        line.length =
            crate::platform::os::read_file(c"/proc/self/cmdline", &mut line.bytes).unwrap_or(0);
        // The arguments end in NULs: the last one goes, the others become spaces.
        while line.length > 0 && line.bytes[line.length - 1] == 0 {
            line.length -= 1;
        }
        for byte in &mut line.bytes[..line.length] {
            if *byte == 0 {
                *byte = b' ';
            }
        }
        line
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }

    /// The command line as text, any invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl core::fmt::Debug for CommandLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_this_test_binary() {
        let line = CommandLine::of_this_process();
        let expected: Vec<String> = std::env::args().collect();
        let joined = expected.join(" ");
        assert!(!line.as_bytes().is_empty());
        assert!(joined.as_bytes().starts_with(line.as_bytes()), "{line:?}");
        assert!(line.as_bytes().len() == joined.len().min(COMMAND_MAX));
    }

    #[test]
    fn the_parent_is_the_process_that_started_us() {
        note_parent();
        // SAFETY: getppid has no preconditions.
        assert_eq!(parent_pid(), unsafe { libc::getppid() } as u64);
        assert_eq!(pid(), std::process::id() as u64);
    }
}
