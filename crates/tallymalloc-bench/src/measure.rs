//! One measured run: a workload under an allocator, its wall time and peak resident memory.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub struct Run {
    pub seconds: f64,
    /// CPU time of the program (and its waited-for children), user and system.
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// The workload's one-line output (a checksum), compared across allocators.
    pub output: String,
}

/// Runs `program arguments` with `library` preloaded (if any) and waits for it with `wait4`,
/// which reports the child's own peak resident set.
pub fn run(program: &Path, arguments: &[String], library: Option<&Path>) -> Result<Run, String> {
    let preload = library.map(|library| ("LD_PRELOAD", library.as_os_str()));
    run_with_environment(program, arguments, preload.as_slice())
}

/// As [`run`], with `environment` added to the program's.
pub fn run_with_environment(
    program: &Path,
    arguments: &[String],
    environment: &[(&str, &OsStr)],
) -> Result<Run, String> {
    let mut command = Command::new(program);
    command
        .args(arguments)
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet reaped; status and usage are valid out-params.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    let mut output = String::new();
    let mut errors = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut output).ok();
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut errors).ok();
    }
    if reaped < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "{} {} failed (wait status {status}): {}",
            program.display(),
            arguments.join(" "),
            errors.trim()
        ));
    }
    let time = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run {
        seconds,
        cpu_seconds: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        output: output.trim().to_owned(),
    })
}

/// The middle of `values` (the mean of the two middle ones for an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}
