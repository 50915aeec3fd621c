//! `tallymalloc run`: runs a program with the library preloaded, its stats written as JSON at
//! exit (with a timeline sampled every `interval` milliseconds), and reads them back: the
//! program's, and those of every process it started that loaded the library (`processes.rs`).
//!
//! The program shares our standard streams. While it runs we ignore SIGINT and SIGQUIT, as a
//! shell does for a foreground job, so that a Ctrl-C ends the program and we still report.

use crate::processes::{self, ProcessReport};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub struct Request {
    pub program: OsString,
    pub arguments: Vec<OsString>,
    pub library: PathBuf,
    pub interval_ms: u64,
    /// Debug mode, reporting each misuse and carrying on; its reports (and the leaks by
    /// allocation site at exit) come on the program's stderr.
    pub debug: bool,
    /// Sampled heap profiles (`TALLYMALLOC_PROFILE=1`), written at exit for us to read.
    pub profile: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signalled(i32),
}

impl Ending {
    /// The status a shell would give: the exit code, or 128 plus the signal.
    pub fn shell_status(self) -> i32 {
        match self {
            Ending::Exited(code) => code,
            Ending::Signalled(signal) => 128 + signal,
        }
    }
}

pub struct Outcome {
    pub ending: Ending,
    pub seconds: f64,
    /// Every process that wrote stats, in tree order, the program's first (`processes.rs`);
    /// empty if none did.
    pub processes: Vec<ProcessReport>,
    /// Why there are no stats, when `processes` is empty; and reports that could not be read.
    pub problems: Vec<String>,
}

/// Why a program could not be started: the shell's 127 (not found) or 126 (not runnable).
pub struct StartError {
    pub status: i32,
    pub message: String,
}

pub fn run(request: &Request) -> Result<Outcome, StartError> {
    let directory = report_directory().map_err(|message| StartError { status: 1, message })?;
    let mut preload = request.library.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let mut target = OsString::from("json:");
    target.push(directory.join("stats-%p.json"));
    let mut command = Command::new(&request.program);
    command
        .args(&request.arguments)
        .env("LD_PRELOAD", preload)
        .env("TALLYMALLOC_STATS", target)
        .env(
            "TALLYMALLOC_STATS_INTERVAL",
            request.interval_ms.to_string(),
        );
    // A Python interpreter that has the tallymalloc package installs it in CPython's domains
    // at start-up (its .pth hook), so the report shows raw, mem and obj; others ignore it.
    if std::env::var_os("TALLYMALLOC_PYTHON").is_none() {
        command.env("TALLYMALLOC_PYTHON", "1");
    }
    if request.debug {
        let mut leaks = OsString::from(directory.join("leaks-%p.json"));
        leaks.push("");
        command
            .env("TALLYMALLOC_DEBUG", "1")
            .env("TALLYMALLOC_ON_ERROR", "report")
            .env("TALLYMALLOC_REPORT", leaks);
    }
    if request.profile {
        let mut file = OsString::from(directory.join("profile-%p.txt"));
        file.push("");
        command
            .env("TALLYMALLOC_PROFILE", "1")
            .env("TALLYMALLOC_PROFILE_FILE", file);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|error| {
        let _ = std::fs::remove_dir_all(&directory);
        let name = Path::new(&request.program).display().to_string();
        match error.kind() {
            std::io::ErrorKind::NotFound => StartError {
                status: 127,
                message: format!("{name}: command not found"),
            },
            _ => StartError {
                status: 126,
                message: format!("{name}: {error}"),
            },
        }
    })?;
    let status = {
        let _ignoring = IgnoreInterrupts::start();
        child.wait()
    };
    let seconds = started.elapsed().as_secs_f64();
    let ending = match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Signalled(signal),
            (None, None) => Ending::Exited(1),
        },
        Err(_) => Ending::Exited(1),
    };
    let (processes, mut problems) =
        processes::read_all(&directory, child.id(), request.profile, request.debug);
    let _ = std::fs::remove_dir_all(&directory);
    if processes.is_empty() {
        problems.insert(
            0,
            match ending {
                Ending::Signalled(_) => {
                    "the program was killed before tallymalloc could write its stats".to_owned()
                }
                Ending::Exited(_) => "the program did not load libtallymalloc.so (a static or \
                                      setuid program ignores LD_PRELOAD)"
                    .to_owned(),
            },
        );
    }
    Ok(Outcome {
        ending,
        seconds,
        processes,
        problems,
    })
}

/// A fresh private directory for the reports.
fn report_directory() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for attempt in 0..100 {
        let directory = base.join(format!("tallymalloc-run-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&directory) {
            Ok(()) => return Ok(directory),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: {e}", directory.display())),
        }
    }
    Err(format!("no fresh directory in {}", base.display()))
}

/// Ignores SIGINT and SIGQUIT for as long as it lives.
struct IgnoreInterrupts {
    previous: [libc::sighandler_t; 2],
}

impl IgnoreInterrupts {
    fn start() -> IgnoreInterrupts {
        // The child was started with the dispositions it inherited, before this.
        // SAFETY: SIG_IGN is a valid disposition for both signals.
        let previous = unsafe {
            [
                libc::signal(libc::SIGINT, libc::SIG_IGN),
                libc::signal(libc::SIGQUIT, libc::SIG_IGN),
            ]
        };
        IgnoreInterrupts { previous }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions `start` replaced.
        unsafe {
            libc::signal(libc::SIGINT, self.previous[0]);
            libc::signal(libc::SIGQUIT, self.previous[1]);
        }
    }
}

/// The signal's name as `kill -l` gives it, for the report.
pub fn signal_name(signal: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
    ];
    known
        .iter()
        .find(|(number, _)| *number == signal)
        .map_or_else(
            || format!("signal {signal}"),
            |(_, name)| (*name).to_owned(),
        )
}
