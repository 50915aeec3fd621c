//! Real programs under LD_PRELOAD=libtallymalloc.so, each output compared with the same run on
//! the system allocator: python3 (threads, dicts, JSON), seventeen modules of CPython's
//! regression tests, git (many commits, log, gc, fsck), sqlite3 (100,000 rows), gcc compiling
//! a 25-file program, sort and gzip (large generated files). Every run also proves that
//! tallymalloc was loaded: `TALLYMALLOC_VERBOSE=1` makes each process print its options.
//! Python, sqlite3 and CPython's tests run under the hardened build too (secure mode built in,
//! `libtallymalloc-secure.so`).

mod common;

use common::{hardened_library, library, run_ok, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

const LOADED: &str = "tallymalloc: options in force";

/// Runs `program args` in `directory` without and then with tallymalloc, asserts both succeed
/// with the same stdout, and that the second run loaded tallymalloc. Returns that stdout.
fn same_output_with_and_without(
    what: &str,
    directory: &Path,
    program: &str,
    args: &[&str],
    environment: &[(&str, &str)],
) -> String {
    same_output_under(&[library()], what, directory, program, args, environment)
}

/// [`same_output_with_and_without`] with each of `libraries` preloaded in turn.
fn same_output_under(
    libraries: &[PathBuf],
    what: &str,
    directory: &Path,
    program: &str,
    args: &[&str],
    environment: &[(&str, &str)],
) -> String {
    let run = |preload: Option<&PathBuf>| {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(directory)
            .envs(environment.iter().copied());
        if let Some(library) = preload {
            command
                .env("LD_PRELOAD", library)
                .env("TALLYMALLOC_VERBOSE", "1");
        }
        run_ok(command, &format!("{what} (preloaded: {preload:?})"))
    };
    let plain = String::from_utf8_lossy(&run(None).stdout).into_owned();
    assert!(!plain.trim().is_empty(), "{what}: no output to compare");
    for library in libraries {
        let tallied = run(Some(library));
        assert!(
            String::from_utf8_lossy(&tallied.stderr).contains(LOADED),
            "{what}: {} was not loaded",
            library.display()
        );
        let tallied = String::from_utf8_lossy(&tallied.stdout);
        assert_eq!(
            plain,
            tallied,
            "{what}: output differs with {}",
            library.display()
        );
    }
    plain
}

fn fresh_directory(name: &str) -> std::path::PathBuf {
    let directory = scratch().join(name);
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

#[test]
fn python_with_threads() {
    let directory = fresh_directory("python");
    let script = r#"
import hashlib, json, threading, collections

def work(seed, results):
    table = {}
    for i in range(60000):
        key = f"k{(i * 2654435761 + seed) % 20000}"
        table.setdefault(key, []).append(i)
    text = json.dumps({k: v[:5] for k, v in table.items()}, sort_keys=True)
    words = collections.Counter(text.split(","))
    blob = "".join(sorted(str(len(v)) for v in table.values()))
    results[seed] = hashlib.sha256((text + blob).encode()).hexdigest() + f" {len(words)}"

results = {}
threads = [threading.Thread(target=work, args=(seed, results)) for seed in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
big = [bytearray(n % 5000) for n in range(20000)]
print(sum(map(len, big)))
for seed in sorted(results): print(seed, results[seed])
"#;
    std::fs::write(directory.join("work.py"), script).unwrap();
    let libraries = [library(), hardened_library()];
    let output = same_output_under(
        &libraries,
        "python3",
        &directory,
        "python3",
        &["work.py"],
        &[],
    );
    assert_eq!(output.lines().count(), 9);
}

#[test]
fn git_on_a_generated_repository() {
    let directory = fresh_directory("git");
    // A fixed identity and clock make every commit hash the same in both runs.
    let script = r#"
set -e
rm -rf repo && git init -q repo && cd repo
for i in $(seq 1 150); do
  for f in $(seq 1 5); do echo "line $i of file $f $(printf '%0*d' $((i % 40)) 0)" >> "file$f.txt"; done
  mkdir -p "dir$((i % 7))" && seq 1 $i > "dir$((i % 7))/numbers$((i % 3)).txt"
  git add -A && git commit -q -m "commit $i"
done
git log --stat --format='%H %s' | sha256sum
git gc -q --aggressive
git count-objects -v | grep -v size
git fsck --full --no-progress && echo "fsck: clean"
git log --oneline | wc -l
"#;
    std::fs::write(directory.join("build.sh"), script).unwrap();
    let environment = [
        ("GIT_AUTHOR_NAME", "Test"),
        ("GIT_AUTHOR_EMAIL", "test@example.invalid"),
        ("GIT_COMMITTER_NAME", "Test"),
        ("GIT_COMMITTER_EMAIL", "test@example.invalid"),
        ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
        ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("HOME", directory.to_str().unwrap()),
    ];
    let output =
        same_output_with_and_without("git", &directory, "bash", &["build.sh"], &environment);
    assert!(output.trim_end().ends_with("150"), "{output}");
}

#[test]
fn sqlite3_with_100k_rows() {
    let directory = fresh_directory("sqlite");
    let sql = r#"
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO items SELECT i, 'item-' || i, i % 97, (i * 7919) % 10007 / 100.0,
  substr(printf('%d-%.*c', (i * 104729) % 1009, i % 200, 'x'), 1, 300) FROM n;
CREATE INDEX by_category ON items(category, price);
SELECT count(*), sum(price), max(length(note)) FROM items;
SELECT category, count(*), round(avg(price), 4) FROM items GROUP BY category ORDER BY 3 DESC LIMIT 5;
SELECT name FROM items WHERE category = 42 ORDER BY price DESC, id LIMIT 3;
UPDATE items SET note = upper(note) || name WHERE id % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
SELECT count(*), sum(length(note)) FROM items;
SELECT group_concat(id) FROM (SELECT id FROM items ORDER BY note DESC, id LIMIT 10);
"#;
    std::fs::write(directory.join("script.sql"), sql).unwrap();
    let output = same_output_under(
        &[library(), hardened_library()],
        "sqlite3",
        &directory,
        "sh",
        &["-c", "rm -f test.db && sqlite3 test.db < script.sql"],
        &[],
    );
    assert!(output.starts_with("100000|"), "{output}");
}

#[test]
fn sort_of_a_large_file() {
    let directory = fresh_directory("sort");
    let mut text = String::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for line in 0..1_000_000u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!(
            "{:x} {} {}\n",
            state % 1_000_003,
            line % 977,
            state >> 40
        ));
    }
    std::fs::write(directory.join("input.txt"), text).unwrap();
    let output = same_output_with_and_without(
        "sort",
        &directory,
        "sh",
        &["-c", "sort input.txt | sha256sum && sort -n -k2 -k3 input.txt | sha256sum && sort -u input.txt | wc -l"],
        &[("LC_ALL", "C")],
    );
    assert_eq!(output.lines().count(), 3);
}

#[test]
fn cpython_regression_tests() {
    // Seventeen modules of CPython's own test suite, threads among them, two at a time.
    let directory = fresh_directory("regrtest");
    let modules = "test_list test_dict test_set test_json test_re test_thread \
                   test_threading_local test_queue test_collections test_heapq test_bisect \
                   test_string test_struct test_itertools test_functools test_weakref test_pickle";
    // Some of these tests check that a child's stderr is empty, so tallymalloc proves it was
    // loaded with a stats file per process instead of a line on stderr.
    let script =
        format!("python3 -m test -j2 -q {modules} 2>&1 | grep -E '^(Total tests|Result):'");
    let run = |preload: Option<(&str, PathBuf)>| {
        let mut command = Command::new("sh");
        command.args(["-c", &script]).current_dir(&directory);
        if let Some((name, library)) = &preload {
            let target = format!("json:{}/stats-{name}-%p.json", directory.display());
            command
                .env("LD_PRELOAD", library)
                .env("TALLYMALLOC_STATS", target);
        }
        let output = run_ok(
            command,
            &format!("python3 -m test (preloaded: {preload:?})"),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let plain = run(None);
    assert!(plain.contains("Result: SUCCESS"), "{plain}");
    for (name, library) in [("normal", library()), ("hardened", hardened_library())] {
        let tallied = run(Some((name, library)));
        assert_eq!(
            plain, tallied,
            "CPython's tests fare differently with {name}"
        );
        let prefix = format!("stats-{name}-");
        let reports = std::fs::read_dir(&directory)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .count();
        assert!(
            reports >= 3,
            "{name} was not loaded ({reports} stats files)"
        );
    }
}

#[test]
fn gcc_compiles_a_multi_file_program() {
    let directory = fresh_directory("gcc");
    let files = 24;
    let mut main = String::from("#include <stdio.h>\n");
    for file in 0..files {
        let mut source = String::from("#include <stdlib.h>\n#include <string.h>\n");
        for function in 0..40 {
            source.push_str(&format!(
                "static long helper_{function}(long x) {{ long a[16]; for (int i = 0; i < 16; i++) \
                 a[i] = x * {} + i; long s = 0; for (int i = 0; i < 16; i++) s += a[i] ^ (s >> 3); \
                 return s; }}\n",
                file * 40 + function + 1
            ));
        }
        source.push_str(&format!("long unit_{file}(long x) {{ long s = 0;"));
        for function in 0..40 {
            source.push_str(&format!(" s += helper_{function}(x + {function});"));
        }
        source
            .push_str(" char *t = malloc(64); memset(t, 1, 64); s += t[7]; free(t); return s; }\n");
        std::fs::write(directory.join(format!("unit_{file}.c")), source).unwrap();
        main.push_str(&format!("long unit_{file}(long);\n"));
    }
    main.push_str("int main(void) { long s = 0;");
    for file in 0..files {
        main.push_str(&format!(" s += unit_{file}({file});"));
    }
    main.push_str(" printf(\"%ld\\n\", s); return 0; }\n");
    std::fs::write(directory.join("main.c"), main).unwrap();
    // The compiler, assembler and linker all run under the allocator; so does the program.
    let output = same_output_with_and_without(
        "gcc",
        &directory,
        "sh",
        &["-c", "rm -f program && gcc -O2 -o program *.c && ./program"],
        &[],
    );
    assert!(output.trim().parse::<i64>().is_ok(), "{output}");
}

#[test]
fn gzip_of_a_large_file() {
    let directory = fresh_directory("gzip");
    let mut text = String::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    while text.len() < 40 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!(
            "{} {:x} {}\n",
            state % 1009,
            state >> 20,
            state % 7
        ));
    }
    std::fs::write(directory.join("input.txt"), text).unwrap();
    let output = same_output_with_and_without(
        "gzip",
        &directory,
        "sh",
        &["-c", "gzip -9 -n -c input.txt | sha256sum && gzip -n -c input.txt | gzip -d | sha256sum && sha256sum < input.txt"],
        &[],
    );
    let sums: Vec<&str> = output.lines().collect();
    assert_eq!(sums[1], sums[2], "the round trip changed the file");
}
