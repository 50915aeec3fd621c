//! `tallymalloc`: run any program on tallymalloc and see its memory; compare allocators on it;
//! run the benchmark suite; turn a saved report into text or HTML.

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tallymalloc_cli::document::StatsDocument;
use tallymalloc_cli::processes::{self, ProcessReport};
use tallymalloc_cli::profile::Profile;
use tallymalloc_cli::{compare, environment, flame, html_report, library, run, text_report};

#[derive(Parser)]
#[command(
    name = "tallymalloc",
    version,
    about = "Run programs on tallymalloc and see where their memory goes"
)]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Run PROGRAM on tallymalloc, then report its memory on stderr.
    ///
    /// A Python interpreter that has the tallymalloc package (scripts/build-python) gets it
    /// installed in CPython's raw, mem and obj domains from start-up (TALLYMALLOC_PYTHON=1,
    /// unless the environment sets it otherwise), so the report shows them.
    Run {
        /// Debug mode: misuse and leaks by allocation site reported with call stacks on the
        /// program's stderr (the program carries on after each report).
        #[arg(long, conflicts_with_all = ["profile", "pprof", "folded"])]
        debug: bool,
        /// Sampled heap profile: the top allocation sites by bytes allocated and by bytes live
        /// at the peak, with call stacks (TALLYMALLOC_PROFILE=1; one sample per 512 KiB
        /// allocated on average, TALLYMALLOC_PROFILE_SAMPLE_BYTES to change it).
        #[arg(long)]
        profile: bool,
        /// Also write the profile as gzipped pprof to PATH (implies --profile).
        #[arg(long, value_name = "PATH")]
        pprof: Option<PathBuf>,
        /// Also write the profile's bytes allocated as folded stacks to PATH, for inferno or
        /// flamegraph.pl (implies --profile).
        #[arg(long, value_name = "PATH")]
        folded: Option<PathBuf>,
        /// Also write the stats (docs/stats-schema.json) to PATH.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Also write a self-contained HTML report with charts to PATH.
        #[arg(long, value_name = "PATH")]
        html: Option<PathBuf>,
        /// Milliseconds between samples of memory over time.
        #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        interval: u64,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        command: Vec<OsString>,
    },
    /// Run PROGRAM under each installed allocator and compare time and memory.
    Compare {
        /// Runs under each allocator.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
        reps: u64,
        /// Allocators, comma-separated: also mimalloc3, mimalloc2, snmalloc and rpmalloc (built
        /// once from crates.io's sources), tallymalloc-secure, or NAME=PATH.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "system,tallymalloc,mimalloc-deb,jemalloc,tcmalloc"
        )]
        allocators: Vec<String>,
        /// Also write the results as JSON to PATH.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROGRAM"
        )]
        command: Vec<String>,
    },
    /// Run the project's benchmark suite (arguments go to it; --help lists them).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        arguments: Vec<OsString>,
    },
    /// Print the report of a saved stats JSON, and optionally write it as HTML.
    Report {
        /// A file written by `tallymalloc run --json` or TALLYMALLOC_STATS=json:PATH.
        file: PathBuf,
        #[arg(long, value_name = "PATH")]
        html: Option<PathBuf>,
    },
    /// Print the path of the libtallymalloc.so that `run` preloads, for
    /// `LD_PRELOAD=$(tallymalloc library) PROGRAM` (writing out the command's own copy if it is
    /// the one found).
    Library,
    /// List the TALLYMALLOC_* environment variables: values, default, what each does.
    Environment {
        /// As the Markdown table the README shows.
        #[arg(long)]
        markdown: bool,
    },
    /// Write the man pages (tallymalloc.1, with the environment variables, and one per
    /// subcommand) into DIR, as scripts/install does.
    #[command(hide = true)]
    Manual {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let command = Command::parse();
    let status = match command.action {
        Action::Run {
            debug,
            profile,
            pprof,
            folded,
            json,
            html,
            interval,
            command,
        } => {
            let outputs = Outputs {
                json,
                html,
                pprof,
                folded,
            };
            run_program(debug, profile, outputs, interval, command)
        }
        Action::Compare {
            reps,
            allocators,
            json,
            command,
        } => compare_allocators(reps as usize, &allocators, json, &command),
        Action::Bench { arguments } => {
            let name = OsString::from("tallymalloc bench");
            return tallymalloc_bench::main_with_arguments(std::iter::once(name).chain(arguments));
        }
        Action::Report { file, html } => report_file(&file, html),
        Action::Library => match library::locate() {
            Ok(library) => {
                println!("{}", library.display());
                0
            }
            Err(message) => fail(message),
        },
        Action::Environment { markdown } => {
            if markdown {
                print!("{}", environment::markdown());
            } else {
                print!("{}", environment::text());
            }
            0
        }
        Action::Manual { out_dir } => match write_manual(&out_dir) {
            Ok(()) => 0,
            Err(error) => fail(format!("{}: {error}", out_dir.display())),
        },
    };
    ExitCode::from(status.clamp(0, 255) as u8)
}

fn fail(message: impl std::fmt::Display) -> i32 {
    eprintln!("tallymalloc: {message}");
    1
}

/// The files `run` writes besides its report.
struct Outputs {
    json: Option<PathBuf>,
    html: Option<PathBuf>,
    pprof: Option<PathBuf>,
    folded: Option<PathBuf>,
}

fn run_program(
    debug: bool,
    profile: bool,
    outputs: Outputs,
    interval_ms: u64,
    mut command: Vec<OsString>,
) -> i32 {
    let Outputs {
        json,
        html,
        pprof,
        folded,
    } = outputs;
    let profile = profile || pprof.is_some() || folded.is_some();
    let library = match library::locate() {
        Ok(library) => library,
        Err(message) => return fail(message),
    };
    let program = command.remove(0);
    let title = std::iter::once(&program)
        .chain(&command)
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let request = run::Request {
        program,
        arguments: command,
        library,
        interval_ms,
        debug,
        profile,
    };
    let outcome = match run::run(&request) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("tallymalloc: {}", error.message);
            return error.status;
        }
    };
    let ending = match outcome.ending {
        run::Ending::Exited(code) => format!("exited with status {code}"),
        run::Ending::Signalled(signal) => format!("was killed by {}", run::signal_name(signal)),
    };
    eprintln!(
        "\ntallymalloc: {title} {ending} after {:.3} s",
        outcome.seconds
    );
    let Some(program) = outcome.processes.first() else {
        for problem in &outcome.problems {
            eprintln!("tallymalloc: no stats: {problem}");
        }
        return outcome.ending.shell_status();
    };
    for problem in &outcome.problems {
        eprintln!("tallymalloc: {problem}");
    }
    // Each process's profile is symbolised from its own mappings; the report shows them
    // merged, so that the sites of a tree of processes (a pool's workers) add up.
    let profiles: Vec<Option<Profile>> = outcome
        .processes
        .iter()
        .map(|report| match &report.profile {
            Some(Ok(raw)) => Some(Profile::from_raw(raw)),
            Some(Err(why)) => {
                eprintln!("tallymalloc: no profile of process {}: {why}", report.pid);
                None
            }
            None => None,
        })
        .collect();
    let symbolised = Profile::merged(profiles.iter().flatten());
    let several = outcome.processes.len() > 1;
    let document_of = |report: &ProcessReport, profile: Option<&Profile>| {
        let mut text = report.json.clone();
        if let Some(leaks) = &report.leaks {
            text = with_key(&text, "leaks", leaks);
        }
        if let Some(profile) = profile {
            let profile = serde_json::to_string(profile).unwrap_or_default();
            text = with_key(&text, "profile", &profile);
        }
        text
    };
    let mut json_text = document_of(program, symbolised.as_ref());
    if several {
        let each: Vec<String> = outcome
            .processes
            .iter()
            .zip(&profiles)
            .map(|(report, profile)| document_of(report, profile.as_ref()))
            .collect();
        json_text = with_key(&json_text, "processes", &format!("[{}]", each.join(",")));
    }
    if let Some(profile) = &symbolised {
        write_profile_files(profile, pprof.as_deref(), folded.as_deref());
    }
    let document = &program.document;
    eprint!("{}", text_report::render(document));
    if several {
        eprint!("{}", processes::render_table(&outcome.processes));
    }
    if let Some(profile) = &symbolised {
        eprint!("{}", text_report::render_profile(profile));
    }
    if let Some(path) = &json {
        if let Err(e) = std::fs::write(path, &json_text) {
            eprintln!("tallymalloc: {}: {e}", path.display());
        }
    }
    if let Some(path) = &html {
        let page = html_report::render(&json_text, document, &title, symbolised.as_ref());
        if let Err(e) = std::fs::write(path, page) {
            eprintln!("tallymalloc: {}: {e}", path.display());
        }
    }
    outcome.ending.shell_status()
}

/// The stats JSON with `value` (JSON text) merged in under `key` (docs/stats-schema.json's
/// "leaks" and "profile"), or the stats alone if either does not parse.
fn with_key(stats: &str, key: &str, value: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(stats)
        .ok()
        .zip(serde_json::from_str::<serde_json::Value>(value).ok());
    match parsed {
        Some((serde_json::Value::Object(mut document), value)) => {
            document.insert(key.to_owned(), value);
            serde_json::Value::Object(document).to_string()
        }
        _ => stats.to_owned(),
    }
}

/// Writes `--pprof` and `--folded`, saying on stderr what could not be written.
fn write_profile_files(profile: &Profile, pprof: Option<&Path>, folded: Option<&Path>) {
    if let Some(path) = pprof {
        if let Err(e) = std::fs::write(path, tallymalloc_cli::pprof::gzipped(profile)) {
            eprintln!("tallymalloc: {}: {e}", path.display());
        }
    }
    if let Some(path) = folded {
        let text = flame::folded(profile, flame::Measure::AllocatedBytes);
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("tallymalloc: {}: {e}", path.display());
        }
    }
}

fn compare_allocators(
    reps: usize,
    wanted: &[String],
    json: Option<PathBuf>,
    command: &[String],
) -> i32 {
    let library = match library::locate() {
        Ok(library) => library,
        Err(message) => return fail(message),
    };
    let allocators = match compare::allocators(wanted, &library) {
        Ok(allocators) if !allocators.is_empty() => allocators,
        Ok(_) => return fail("none of the allocators asked for is installed"),
        Err(message) => return fail(message),
    };
    let Some(program) = find_program(&command[0]) else {
        eprintln!("tallymalloc: {}: command not found", command[0]);
        return 127;
    };
    let rows = match compare::measure(&allocators, &program, &command[1..], reps) {
        Ok(rows) => rows,
        Err(message) => return fail(message),
    };
    print!("{}", compare::table(&rows, reps));
    if let Some(path) = json {
        let document = compare::to_json(&rows, &command[0], &command[1..], reps);
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text + "\n") {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    0
}

/// `name` as the shell would find it: a path if it has a slash, else through `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}

fn report_file(file: &Path, html: Option<PathBuf>) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let document = match StatsDocument::parse(&text) {
        Ok(document) => document,
        Err(why) => return fail(format!("{}: {why}", file.display())),
    };
    print!("{}", text_report::render(&document));
    let saved = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let tree = processes::from_saved(&saved);
    if tree.len() > 1 {
        print!("{}", processes::render_table(&tree));
    }
    // A saved document's profile is already symbolised: its frames are shown as they are.
    let profile = Profile::from_json(&saved["profile"]);
    if let Some(profile) = &profile {
        print!("{}", text_report::render_profile(profile));
    }
    if let Some(path) = html {
        let title = file.display().to_string();
        let page = html_report::render(&text, &document, &title, profile.as_ref());
        if let Err(e) = std::fs::write(&path, page) {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    0
}

/// The man pages: `tallymalloc.1` (the subcommands, then the environment variables) and
/// `tallymalloc-SUBCOMMAND.1` for each visible subcommand.
fn write_manual(directory: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    // `tallymalloc help` is clap's and has no page of its own to list.
    let command = Command::command().disable_help_subcommand(true);
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    page.extend_from_slice(b".SH ENVIRONMENT\n");
    page.extend_from_slice(environment::roff().as_bytes());
    page.extend_from_slice(b".SH SEE ALSO\n");
    let mut see_also = Vec::new();
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("tallymalloc-{}", subcommand.get_name());
        let mut sub_page = Vec::new();
        clap_mangen::Man::new(
            subcommand
                .clone()
                .display_name(name.clone())
                .bin_name(format!("tallymalloc {}", subcommand.get_name())),
        )
        .render(&mut sub_page)?;
        std::fs::write(directory.join(format!("{name}.1")), sub_page)?;
        see_also.push(format!(".BR {name} (1)"));
    }
    page.extend_from_slice(see_also.join(",\n").as_bytes());
    page.push(b'\n');
    std::fs::write(directory.join("tallymalloc.1"), page)
}
