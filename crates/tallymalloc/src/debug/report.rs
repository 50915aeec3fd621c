//! Debug mode's reports: the kinds of misuse it tells apart, one report each with the stacks
//! of the call and of the block's allocation and first free, and the count of errors found.

use super::*;

/// The kinds of misuse debug mode tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Freed twice.
    DoubleFree,
    /// A freed block passed to realloc.
    ReallocOfFreed,
    /// A pointer the allocator never handed out, or not the start of a block.
    InvalidPointer,
    /// A pointer into the middle of a live block.
    InteriorPointer,
    /// Freed or reallocated through another domain's family.
    DomainMismatch,
    /// The bytes just after the block were written.
    WritePastEnd,
    /// The bytes just before the block were written.
    WriteBeforeStart,
    /// A freed block was written while in quarantine.
    WriteAfterFree,
    /// `calloc` or `reallocarray` whose count times size overflows, or a size no memory holds.
    AbsurdSize,
}

impl ErrorKind {
    fn name(self) -> &'static [u8] {
        match self {
            ErrorKind::DoubleFree => b"double free",
            ErrorKind::ReallocOfFreed => b"use after free (realloc of a freed block)",
            ErrorKind::InvalidPointer => b"invalid pointer",
            ErrorKind::InteriorPointer => b"interior pointer",
            ErrorKind::DomainMismatch => b"domain mismatch",
            ErrorKind::WritePastEnd => b"write past the end",
            ErrorKind::WriteBeforeStart => b"write before the start",
            ErrorKind::WriteAfterFree => b"write after free",
            ErrorKind::AbsurdSize => b"absurd size",
        }
    }
}

static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Misuse found so far.
pub fn error_count() -> u64 {
    ERRORS.load(Ordering::Relaxed)
}

/// What a report says about the block concerned.
pub(super) struct Described {
    size: usize,
    domain: Domain,
    allocated_at: u32,
    freed_at: u32,
}

impl Described {
    /// # Safety
    /// `header` is a debug header (live or quarantined).
    pub(super) unsafe fn of(header: *const Header) -> Described {
        // SAFETY: the caller's contract.
        unsafe {
            let freed = (*header).state.load(Ordering::Acquire) == FREED;
            Described {
                size: (*header).size,
                domain: Domain::from_stored((*header).domain),
                allocated_at: (*header).site,
                freed_at: if freed { (*header).freed_at as u32 } else { 0 },
            }
        }
    }
}

#[cold]
pub(super) fn report(kind: ErrorKind, call: &[u8], address: usize, block: Option<Described>) {
    ERRORS.fetch_add(1, Ordering::Relaxed);
    let mut line = Line::new();
    line.text(b"tallymalloc debug: ")
        .text(kind.name())
        .text(b" in ")
        .text(call)
        .text(b"(")
        .hex(address)
        .text(b")");
    if let Some(block) = &block {
        line.text(b": block of ")
            .decimal(block.size as u64)
            .text(b" bytes in domain ")
            .text(
                Some(block.domain)
                    .filter(|domain| domain.is_registered())
                    .map_or("?", Domain::name)
                    .as_bytes(),
            );
    }
    line.text(b"\n");
    line.write_to_stderr();
    print_stack(b"  the call:\n", &crate::debug::backtrace::capture(1));
    if let Some(block) = block {
        let sites = [
            (&b"  allocated at:\n"[..], block.allocated_at),
            (&b"  first freed at:\n"[..], block.freed_at),
        ];
        for (title, site) in sites {
            if let Some(stack) = crate::platform::unwind::sites::stack(site) {
                print_stack(title, &stack);
            }
        }
    }
    if on_error_in_debug() == OnError::Abort {
        fatal(b"aborting: debug mode found misuse (TALLYMALLOC_ON_ERROR=report carries on)");
    }
}

/// Prints `stack` under `title`, from the program's first frame outside the allocator.
fn print_stack(title: &[u8], stack: &crate::debug::backtrace::Stack) {
    crate::platform::text::write_stderr(title);
    crate::debug::backtrace::print(&crate::debug::backtrace::outside_allocator(stack));
}

/// Reports a pointer that is not ours, found by a caller that checked (the C library's realloc
/// and malloc_usable_size).
pub fn report_invalid(call: &[u8], address: usize) {
    report(ErrorKind::InvalidPointer, call, address, None);
}

/// Reports a size that no allocation can have (calloc overflow and the like).
pub fn report_absurd_size(call: &[u8], size: usize) {
    report(ErrorKind::AbsurdSize, call, size, None);
}
