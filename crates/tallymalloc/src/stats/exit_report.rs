//! The exit-time stats report: `TALLYMALLOC_STATS=1` prints the human table on stderr, and
//! `TALLYMALLOC_STATS=json:PATH` writes the JSON (with the timeline, if one was sampled) to
//! PATH, where `%p` stands for the process id.
//!
//! The report runs from the `.fini_array`, after the program's own exit handlers, so it sees
//! what the program left allocated. A child forked without `exec` shares its parent's PATH; it
//! writes only if PATH holds `%p`, so it cannot overwrite the parent's report.
//!
//! Programs may close stderr on their way out (coreutils do), so the table goes to a duplicate
//! of stderr taken when the options were read.
//!
//! Invariants: nothing here allocates; the report is best effort (a file that cannot be opened
//! gets one stderr line, never a crash at exit).

use crate::platform::text::{decimal_digits, write_stderr, Line};
use crate::policy::options::{self, StatsAtExit};
use crate::stats;
use crate::stats::report::{self, FdSink};
use core::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

static FIRST_PID: AtomicI32 = AtomicI32::new(0);
static REPORT_FD: AtomicI32 = AtomicI32::new(2);

/// Remembers which process read the options (process set-up).
pub fn note_process_start() {
    // SAFETY: getpid has no preconditions.
    FIRST_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// Keeps a handle on stderr for the table, once the options asked for one.
pub fn prepare() {
    if options::stats_at_exit() == StatsAtExit::Table {
        // A duplicate above the low descriptors programs juggle, closed on exec.
        // SAFETY: fcntl on fd 2 has no memory preconditions; failure leaves fd 2 in use.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 64) };
        if fd >= 0 {
            REPORT_FD.store(fd, Ordering::Relaxed);
        }
    }
}

/// What runs at exit before the report (debug mode's checks and leak report), if anything.
static FIRST_AT_EXIT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Has `hook` run at exit before the report; one hook per process (a later one replaces it).
pub fn first_at_exit(hook: fn()) {
    FIRST_AT_EXIT.store(hook as *mut (), Ordering::Release);
}

/// What runs at exit after the report (the profile), if anything.
static ALSO_AT_EXIT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Has `hook` run at exit after the report; one hook per process.
pub fn also_at_exit(hook: fn()) {
    ALSO_AT_EXIT.store(hook as *mut (), Ordering::Release);
}

/// Runs the hook stored in `slot`, if any.
fn run_hook(slot: &AtomicPtr<()>) {
    let hook = slot.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: only `first_at_exit` and `also_at_exit` store in the slots, and they store
        // a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(hook) };
        hook();
    }
}

extern "C" fn report_at_exit() {
    run_hook(&FIRST_AT_EXIT);
    write_report();
    run_hook(&ALSO_AT_EXIT);
}

#[used]
#[link_section = ".fini_array"]
static REPORT_AT_EXIT: extern "C" fn() = report_at_exit;

/// Writes the report `TALLYMALLOC_STATS` asks for, if any.
pub fn write_report() {
    match options::stats_at_exit() {
        StatsAtExit::Off => {}
        StatsAtExit::Table => {
            let snapshot = stats::snapshot();
            let fd = REPORT_FD.load(Ordering::Relaxed);
            report::write_table(&snapshot, &mut FdSink::new(fd));
        }
        StatsAtExit::Json => write_json_file(options::stats_path()),
    }
}

fn write_json_file(pattern: &[u8]) {
    let Some(fd) = open_report_file(pattern, b"the stats") else {
        return;
    };
    let snapshot = stats::snapshot();
    {
        let mut sink = FdSink::new(fd);
        report::write_json(&snapshot, Some(report::WHOLE_TIMELINE), &mut sink);
    }
    // SAFETY: we opened `fd` above.
    unsafe { libc::close(fd) };
}

/// Opens the file `pattern` names (`%p`: the process id) for a report of `what`, or None (said
/// on stderr when the file cannot be made). A forked child whose pattern has no `%p` gets
/// None: its parent's report is not its to overwrite.
pub(crate) fn open_report_file(pattern: &[u8], what: &[u8]) -> Option<i32> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let has_pid = pattern.windows(2).any(|pair| pair == b"%p");
    if !has_pid && pid != FIRST_PID.load(Ordering::Relaxed) {
        return None;
    }
    let mut path = [0u8; 4096 + 64];
    let mut length = 0;
    let mut rest = pattern;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' && tail.first() == Some(&b'p') {
            let mut digits = [0u8; 20];
            for &digit in decimal_digits(pid as u64, &mut digits) {
                path[length] = digit;
                length += 1;
            }
            rest = &tail[1..];
        } else {
            path[length] = byte;
            length += 1;
            rest = tail;
        }
        if length >= path.len() - 24 {
            write_stderr(b"tallymalloc: a report's path is too long; nothing written\n");
            return None;
        }
    }
    path[length] = 0;
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        let mut line = Line::new();
        line.text(b"tallymalloc: cannot write ")
            .text(what)
            .text(b" to ")
            .text(&path[..length])
            .text(b"\n");
        line.write_to_stderr();
        return None;
    }
    Some(fd)
}
