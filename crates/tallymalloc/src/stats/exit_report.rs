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
//! A process that leaves by `_exit` (a forked worker of Python's multiprocessing does) skips
//! the `.fini_array`; the C library's `_exit` calls [`report_at_quick_exit`] first, which writes
//! the stats and the profile but not debug mode's leak report (such a process skipped its
//! clean-up on purpose). A `vfork` child shares its parent's memory and locks, so only the
//! process that read the options and children forked with our handlers run write then.
//!
//! A process ended by SIGTERM, SIGINT or SIGHUP (a pool's workers are terminated; Ctrl-C ends
//! a foreground job) writes them too, when a report was asked for and the signal's disposition
//! was the default at start-up: [`report_on_termination`] installs a one-shot handler that
//! writes the reports, then lets the signal end the process as it would have. The handler
//! writes only on a thread that holds none of the allocator's locks (the lock registry tracks
//! them), since the reports take those locks; on one that does, the process just ends.
//!
//! Invariants: nothing here allocates; the report is best effort (a file that cannot be opened
//! gets one stderr line, never a crash at exit).

use crate::platform::text::{decimal_digits, write_stderr, Line};
use crate::policy::options::{self, StatsAtExit};
use crate::stats;
use crate::stats::report::{self, FdSink};
use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

static FIRST_PID: AtomicI32 = AtomicI32::new(0);
/// The pid of a child forked with our `pthread_atfork` handlers run, once there is one.
static FORKED_PID: AtomicI32 = AtomicI32::new(0);
/// Where the exit reports are: one writer claims them (`_exit` from an exit handler, or a
/// signal during exit, writes none twice), and a signal on another thread waits for them.
static REPORTS: AtomicU8 = AtomicU8::new(NOT_WRITTEN);
const NOT_WRITTEN: u8 = 0;
const BEING_WRITTEN: u8 = 1;
const WRITTEN: u8 = 2;
static REPORT_FD: AtomicI32 = AtomicI32::new(2);

/// Remembers which process read the options (process set-up).
pub fn note_process_start() {
    // SAFETY: getpid has no preconditions.
    FIRST_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// Remembers that this process is a child forked with our handlers run (not a `vfork` child).
pub fn note_forked_child() {
    // SAFETY: getpid has no preconditions.
    FORKED_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
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
    write_reports_once(true);
}

/// Writes the exit reports unless another writer claimed them: debug mode's checks (with
/// `checks`), the stats, the profile. The terminating signals are blocked on this thread
/// meanwhile, so that their handler never waits on the thread that writes.
fn write_reports_once(checks: bool) {
    if REPORTS
        .compare_exchange(
            NOT_WRITTEN,
            BEING_WRITTEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        return;
    }
    let previous = block_terminating_signals();
    if checks {
        run_hook(&FIRST_AT_EXIT);
    }
    write_report();
    run_hook(&ALSO_AT_EXIT);
    REPORTS.store(WRITTEN, Ordering::Release);
    // SAFETY: `previous` is the mask `block_terminating_signals` read.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, core::ptr::null_mut()) };
}

/// Blocks [`TERMINATING_SIGNALS`] on this thread; returns the mask to restore.
fn block_terminating_signals() -> libc::sigset_t {
    // SAFETY: zeroed sigsets are valid for sigemptyset and as out-parameters.
    let (mut blocked, mut previous): (libc::sigset_t, libc::sigset_t) =
        unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
    // SAFETY: both sets are valid.
    unsafe {
        libc::sigemptyset(&mut blocked);
        for signal in TERMINATING_SIGNALS {
            libc::sigaddset(&mut blocked, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut previous);
    }
    previous
}

#[used]
#[link_section = ".fini_array"]
static REPORT_AT_EXIT: extern "C" fn() = report_at_exit;

/// The reports for a process leaving by `_exit`: the stats and the profile, if asked for and
/// not written yet; nothing in a `vfork` child.
pub fn report_at_quick_exit() {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let ours =
        pid == FIRST_PID.load(Ordering::Relaxed) || pid == FORKED_PID.load(Ordering::Relaxed);
    // Checked first: a vfork child would claim its parent's reports.
    if ours {
        write_reports_once(false);
    }
}

/// The signals after which a process still reports: those that end a process by default and
/// that are sent to ask it to end.
const TERMINATING_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// When a report at exit was asked for, has each of [`TERMINATING_SIGNALS`] whose disposition
/// is the default write the reports first (process set-up, after the options and profiling).
pub fn report_on_termination() {
    let wanted = options::stats_at_exit() == StatsAtExit::Json || crate::profile::active();
    if !wanted {
        return;
    }
    for signal in TERMINATING_SIGNALS {
        // SAFETY: zeroed sigactions are valid out-parameters and a valid empty mask.
        let (mut current, mut handler): (libc::sigaction, libc::sigaction) =
            unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
        // SAFETY: a null new action only reads the current one into `current`.
        if unsafe { libc::sigaction(signal, core::ptr::null(), &mut current) } != 0
            || current.sa_sigaction != libc::SIG_DFL
        {
            continue;
        }
        handler.sa_sigaction = report_then_end as extern "C" fn(libc::c_int) as usize;
        // One-shot: the disposition is the default again once the handler runs.
        handler.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
        // SAFETY: `handler` is a valid action whose function takes the signal number.
        unsafe { libc::sigaction(signal, &handler, core::ptr::null_mut()) };
    }
}

/// The terminating signals' handler: the reports, then the signal again, now at its default
/// disposition (blocked until the handler returns), so the process ends as it would have.
extern "C" fn report_then_end(signal: libc::c_int) {
    if !crate::platform::lock_registry::holds_any() {
        report_at_quick_exit();
        // Another thread may be writing them (the program was exiting): let it finish, for as
        // long as a report takes, but not for ever.
        for _ in 0..5000 {
            if REPORTS.load(Ordering::Acquire) != BEING_WRITTEN {
                break;
            }
            crate::platform::os::sleep_millis(1);
        }
    }
    // SAFETY: raise has no memory preconditions.
    unsafe { libc::raise(signal) };
}

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
    let Some(file) = ReportFile::create(pattern, b"the stats") else {
        return;
    };
    let snapshot = stats::snapshot();
    {
        let mut sink = FdSink::new(file.fd());
        report::write_json(&snapshot, Some(report::WHOLE_TIMELINE), &mut sink);
    }
    file.finish();
}

/// Room for a report's path and its temporary suffix.
const PATH_ROOM: usize = 4096 + 64;
const PARTIAL_SUFFIX: &[u8] = b".partial\0";

/// A report being written. A report to a regular file is written beside it, under the name with
/// `.partial` added, and renamed over it when done, so that a process killed while writing
/// (a pool's worker, terminated) leaves no torn file for a reader; one to anything else (a
/// terminal, `/dev/null`) is written where it is.
pub(crate) struct ReportFile {
    fd: i32,
    /// The path, NUL-terminated, with room for the suffix.
    path: [u8; PATH_ROOM],
    length: usize,
    renamed: bool,
}

impl ReportFile {
    /// Opens the file `pattern` names (`%p`: the process id) for a report of `what`, or None
    /// (said on stderr when the file cannot be made). A forked child whose pattern has no `%p`
    /// gets None: its parent's report is not its to overwrite.
    pub(crate) fn create(pattern: &[u8], what: &[u8]) -> Option<ReportFile> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let has_pid = pattern.windows(2).any(|pair| pair == b"%p");
        if !has_pid && pid != FIRST_PID.load(Ordering::Relaxed) {
            return None;
        }
        let mut file = ReportFile {
            fd: -1,
            path: [0u8; PATH_ROOM],
            length: 0,
            renamed: false,
        };
        let path = &mut file.path;
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
            if length >= path.len() - 24 - PARTIAL_SUFFIX.len() {
                write_stderr(b"tallymalloc: a report's path is too long; nothing written\n");
                return None;
            }
        }
        path[length] = 0;
        file.length = length;
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut status: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `status` writable.
        let exists = unsafe { libc::stat(path.as_ptr().cast(), &mut status) } == 0;
        if !exists || status.st_mode & libc::S_IFMT == libc::S_IFREG {
            path[length..length + PARTIAL_SUFFIX.len()].copy_from_slice(PARTIAL_SUFFIX);
            file.renamed = true;
        }
        // SAFETY: `path` is NUL-terminated.
        file.fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if file.fd < 0 {
            let mut line = Line::new();
            line.text(b"tallymalloc: cannot write ")
                .text(what)
                .text(b" to ")
                .text(&path[..length])
                .text(b"\n");
            line.write_to_stderr();
            return None;
        }
        Some(file)
    }

    pub(crate) fn fd(&self) -> i32 {
        self.fd
    }

    /// Closes the file and, if it was written beside its path, puts it in place.
    pub(crate) fn finish(self) {
        // SAFETY: `fd` is the descriptor `create` opened, closed only here.
        unsafe { libc::close(self.fd) };
        if self.renamed {
            let mut target = [0u8; PATH_ROOM];
            target[..self.length].copy_from_slice(&self.path[..self.length]);
            // SAFETY: both paths are NUL-terminated (`target` after its copied bytes).
            unsafe { libc::rename(self.path.as_ptr().cast(), target.as_ptr().cast()) };
        }
    }
}
