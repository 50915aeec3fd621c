//! The `TALLYMALLOC_*` environment variables, documented once: `tallymalloc environment` prints
//! them, the man page's ENVIRONMENT section is made from them, and the README's table is their
//! Markdown form (a test compares it). A unit test holds the names to the library's parser
//! (`tallymalloc::OPTION_NAMES`), so the documentation cannot name a variable the library does
//! not read, nor miss one it does.

/// One variable: its name, the values it takes, its default, and what it does.
pub struct Variable {
    pub name: &'static str,
    pub values: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every variable, in the order of `tallymalloc::OPTION_NAMES`.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "TALLYMALLOC_PURGE_DELAY",
        values: "milliseconds, `0` to `3600000`",
        default: "`10`",
        meaning: "How long a free page (or a freed huge mapping, kept for reuse) keeps its memory \
            before it goes back to the OS; `0` returns it at once (also \
            `tallymalloc::set_purge_delay_millis`). The delay in force adapts: memory given back \
            and wanted again soon after doubles it (up to 64 times the setting), and each second \
            without that halves it (`tallymalloc::purge_delay_in_force_millis`). Threads purge \
            on their own slow paths; once the process has had 64 MiB committed, a background \
            thread also purges what falls due, so a program that frees a lot and goes idle \
            gives it back within about half a second.",
    },
    Variable {
        name: "TALLYMALLOC_ON_ERROR",
        values: "`report`, `abort`",
        default: "`report` (`abort` in debug mode)",
        meaning: "What happens when a program frees a pointer tallymalloc never handed out: one \
            line on stderr and the call does nothing, or the line and an abort.",
    },
    Variable {
        name: "TALLYMALLOC_ON_MISMATCH",
        values: "`warn`, `abort`, `ignore`",
        default: "`warn`",
        meaning: "What happens when a block is freed or reallocated through another domain's \
            family (always counted, and the block still freed correctly).",
    },
    Variable {
        name: "TALLYMALLOC_STATS",
        values: "`0`, `1`, `json:PATH`",
        default: "`0`",
        meaning: "`1`: the stats table on stderr at exit; `json:PATH`: the JSON to PATH at exit \
            (`%p` is the process id; a child forked without `exec` writes only if PATH has \
            `%p`). A report to a file, like the profile, is also written by a process that \
            leaves by `_exit` or is ended by SIGTERM, SIGINT or SIGHUP whose disposition was the \
            default at start-up (the library installs a one-shot handler that writes, then lets \
            the signal end the process).",
    },
    Variable {
        name: "TALLYMALLOC_STATS_INTERVAL",
        values: "milliseconds, `0` to `3600000`",
        default: "`0` (none)",
        meaning: "Time between the timeline's samples in the stats JSON (the C library starts \
            the sampler when it loads; a Rust program calls `tallymalloc::init()`).",
    },
    Variable {
        name: "TALLYMALLOC_DEBUG",
        values: "`0`, `1`",
        default: "`0`",
        meaning: "`1`: debug mode (mismatched and double frees, invalid pointers, writes past a \
            block's end and after free, leaks by allocation site, with call stacks); read \
            before the first allocation.",
    },
    Variable {
        name: "TALLYMALLOC_QUARANTINE",
        values: "bytes, `0` to `2^40`",
        default: "`16777216`",
        meaning: "Bytes of freed blocks debug mode holds back, poisoned, before reuse (shared \
            among the threads that free).",
    },
    Variable {
        name: "TALLYMALLOC_DEBUG_DEPTH",
        values: "`1` to `64`",
        default: "`24`",
        meaning: "Frames debug mode keeps of each stack it captures: fewer cost less time per \
            allocation and free, more name more callers in reports.",
    },
    Variable {
        name: "TALLYMALLOC_REPORT",
        values: "PATH",
        default: "none",
        meaning: "Where debug mode writes its leak report as JSON at exit (`%p`: the process \
            id).",
    },
    Variable {
        name: "TALLYMALLOC_PROFILE",
        values: "`0`, `1`",
        default: "`0`",
        meaning: "`1`: sampled heap profiles (ignored in debug mode).",
    },
    Variable {
        name: "TALLYMALLOC_PROFILE_SAMPLE_BYTES",
        values: "bytes, `1` to `2^40`",
        default: "`524288`",
        meaning: "Mean bytes allocated between two samples (also \
            `tallymalloc::profile_set_sample_bytes`).",
    },
    Variable {
        name: "TALLYMALLOC_PROFILE_FILE",
        values: "PATH",
        default: "none (the top sites go to stderr)",
        meaning: "Where the profile is written at exit (`%p`: the process id), for `tallymalloc \
            run` to read.",
    },
    Variable {
        name: "TALLYMALLOC_FAULT",
        values: "`mmap:after=N[,for=M]`, `mmap:P%`",
        default: "none",
        meaning: "For tests: let N of the OS layer's mapping calls succeed and refuse the next M \
            (or all), or refuse P in a hundred; allocations then fail cleanly with `ENOMEM` \
            (also `tallymalloc::set_fault_plan`).",
    },
    Variable {
        name: "TALLYMALLOC_VERBOSE",
        values: "`0`, `1`",
        default: "`0`",
        meaning: "`1` prints the options in force when the library loads.",
    },
    Variable {
        name: "TALLYMALLOC_HUGE_PAGES",
        values: "`0`, `1`",
        default: "`0`",
        meaning: "`1`: a huge block's mapping of 8 MiB or more asks the kernel for transparent \
            huge pages (`MADV_HUGEPAGE`), so filling it faults once per 2 MiB instead of once \
            per 4 KiB, and so do the 4 MiB segments of blocks over 8 KiB, which makes copying and \
            filling them cheaper; `0` leaves it to the kernel's default (also \
            `tallymalloc::set_huge_pages`). Off by default: where the kernel must compact memory \
            for a huge page, or (in a virtual machine that reports free memory to its host) the \
            host must fault one in, filling a block took up to ten times as long as with 4 KiB \
            pages (docs/MEASUREMENTS.md, \"Huge blocks\"). A program that touches only parts of \
            its huge blocks may be charged whole 2 MiB pages for them, and every thread that uses \
            blocks over 8 KiB at least one (in mstress, 160 MiB peak instead of 33).",
    },
    Variable {
        name: "TALLYMALLOC_SECURE",
        values: "`0`, `1`",
        default: "`0`",
        meaning: "`1`: secure mode, read before the first allocation. Free-list links are \
            encoded with a random key per page and checked on every pop, so a forged link \
            aborts instead of malloc returning the attacker's address. A double free aborts (by \
            the owning thread; by another thread while the block is still first on the page's \
            remote-free list). Fresh blocks are handed out in a random order. Every segment ends \
            in a `PROT_NONE` guard page. The normal library keeps its fast paths free of the \
            checks, so here every call takes a slow path; the hardened build \
            (`libtallymalloc-secure.so`) keeps it always on for under a third of the extra \
            instructions.",
    },
    Variable {
        name: "TALLYMALLOC_PYTHON",
        values: "`0`, `1`, domains such as `raw,mem`",
        default: "`0`",
        meaning: "Read by the Python package's start-up hook, not the library: `1` installs \
            tallymalloc in CPython's raw, mem and obj domains, a list names the domains, `0` \
            nothing (`tallymalloc run` sets `1`).",
    },
    Variable {
        name: "TALLYMALLOC_LIB",
        values: "PATH",
        default: "beside the command, its prefix's `lib`, the command's own copy",
        meaning: "Read by `tallymalloc run` and the Python package, not the library: the \
            `libtallymalloc.so` to use.",
    },
];

/// The variables as a Markdown table (the README's).
pub fn markdown() -> String {
    let mut table =
        String::from("| variable | values | default | what it does |\n|---|---|---|---|\n");
    for variable in VARIABLES {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            variable.name, variable.values, variable.default, variable.meaning
        ));
    }
    table
}

/// The variables as plain text, for a terminal.
pub fn text() -> String {
    let mut text = String::new();
    for variable in VARIABLES {
        text.push_str(&format!(
            "{}\n    values: {}\n    default: {}\n{}\n\n",
            variable.name,
            unquote(variable.values),
            unquote(variable.default),
            wrap(&unquote(variable.meaning), 4, 96)
        ));
    }
    text
}

/// The variables as the body of a man page's ENVIRONMENT section (roff).
pub fn roff() -> String {
    let mut roff = String::new();
    for variable in VARIABLES {
        roff.push_str(&format!(
            ".TP\n.B {}\nValues: {}. Default: {}.\n{}\n",
            variable.name,
            roff_escape(&unquote(variable.values)),
            roff_escape(&unquote(variable.default)),
            roff_escape(&unquote(variable.meaning))
        ));
    }
    roff
}

/// Markdown's code quotes dropped, for text that is not rendered.
fn unquote(text: &str) -> String {
    text.replace('`', "")
}

/// Backslashes doubled and a leading period or quote guarded, as roff needs in running text.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// `text` filled into lines of at most `width` columns, each indented by `indent` spaces.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    let margin = " ".repeat(indent);
    lines
        .iter()
        .map(|l| format!("{margin}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_exactly_the_variables_the_library_parses_in_its_order() {
        let documented: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(documented, tallymalloc::OPTION_NAMES);
        for variable in VARIABLES {
            assert!(!variable.values.is_empty() && !variable.default.is_empty());
            assert!(variable.meaning.ends_with('.'), "{}", variable.name);
            assert!(
                !variable.meaning.contains('|'),
                "{} breaks the table",
                variable.name
            );
        }
    }

    #[test]
    fn the_readme_shows_this_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if !root.join("scripts/install").exists() {
            return; // a packaged crate, without the repository around it
        }
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's table of variables differs from `tallymalloc environment --markdown`: \
             paste that output over it"
        );
    }

    #[test]
    fn roff_guards_what_roff_would_read_as_requests() {
        assert_eq!(roff_escape(".hidden"), "\\&.hidden");
        assert_eq!(roff_escape("a\\b-c"), "a\\eb\\-c");
        let page = roff();
        assert_eq!(page.matches(".TP\n").count(), VARIABLES.len());
        assert!(!page.contains('`'));
    }

    #[test]
    fn text_is_wrapped_and_indented() {
        let wrapped = wrap("one two three four", 2, 10);
        assert_eq!(wrapped, "  one two\n  three\n  four");
        assert!(text().lines().all(|l| l.len() <= 96 || !l.contains(' ')));
    }
}
