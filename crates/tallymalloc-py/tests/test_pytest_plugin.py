"""The pytest plugin (``tallymalloc/pytest_plugin.py``), run on test files of its own in
subprocesses: exactly the tests that break a limit, leak or free through the wrong family fail,
with messages that name the cause; with xdist, each worker checks its own; without
``--tallymalloc`` every test passes."""

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import PRELOAD_LIBRARY, build_cython_extension
from tallymalloc.pytest_plugin import format_size, parse_size

HERE = os.path.dirname(os.path.abspath(__file__))
MISBEHAVING = "test_misbehaving.py"

FAILED = {
    "test_breaks_the_limit",
    "test_breaks_the_limit_across_threads",
    "test_leaks",
    "test_frees_through_the_wrong_family",
}
ERRORS = {"test_frees_through_the_wrong_family_at_teardown", "test_bad_marker"}
PASSED = {
    "test_behaves",
    "test_behaves_within_the_limit",
    "test_behaves_in_phases",
    "test_behaves_without_leaking",
    "test_behaves_after_warming_a_cache",
}


def run_pytest(directory, *flags, env=None):
    """Runs pytest on `directory` in a new interpreter; returns the CompletedProcess and each
    test's (outcome, message) from its JUnit XML."""
    report = directory / "report.xml"
    environment = dict(os.environ)
    environment.pop("TALLYMALLOC_PYTHON", None)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"]
        + list(flags),
        cwd=directory,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert report.exists(), result.stdout + result.stderr
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                message = (child.get("message") or "") + "\n" + (child.text or "")
        outcomes[case.get("name")] = (outcome, message)
    return result, outcomes


@pytest.fixture
def misbehaving(tmp_path):
    shutil.copy(os.path.join(HERE, "plugin", "misbehaving.py"), tmp_path / MISBEHAVING)
    return tmp_path


def names(outcomes, wanted):
    return {name for name, (outcome, _) in outcomes.items() if outcome == wanted}


def assert_misbehaving_tests_caught(outcomes):
    assert names(outcomes, "failed") == FAILED
    assert names(outcomes, "error") == ERRORS
    assert names(outcomes, "passed") == PASSED
    over = outcomes["test_breaks_the_limit"][1]
    assert "limited to 24.0MiB" in over and "peaked at 40." in over, over
    threads = outcomes["test_breaks_the_limit_across_threads"][1]
    assert "peaked at 40." in threads, threads
    leak = outcomes["test_leaks"][1]
    assert "limited to 1.0MiB of leaked memory" in leak and "4.0MiB more are live" in leak, leak
    for name in ("test_frees_through_the_wrong_family",
                 "test_frees_through_the_wrong_family_at_teardown"):
        message = outcomes[name][1]
        assert "1 block of domain 'mem' (PyMem_Malloc)" in message, message
        assert "through domain 'raw'" in message, message
    assert "teardown freed blocks" in outcomes["test_frees_through_the_wrong_family_at_teardown"][1]
    bad = outcomes["test_bad_marker"][1]
    assert "usage error" in bad and "limit_memory" in bad and "'lots'" in bad, bad


def test_exactly_the_misbehaving_tests_fail(misbehaving):
    result, outcomes = run_pytest(misbehaving, "--tallymalloc")
    assert result.returncode == 1, result.stdout
    assert_misbehaving_tests_caught(outcomes)


def test_every_test_passes_without_the_flag(misbehaving):
    result, outcomes = run_pytest(misbehaving, "--strict-markers")
    assert result.returncode == 0, result.stdout + result.stderr
    assert names(outcomes, "passed") == FAILED | ERRORS | PASSED


def test_the_ini_setting_turns_it_on(misbehaving):
    (misbehaving / "pytest.ini").write_text("[pytest]\ntallymalloc = true\n")
    _, outcomes = run_pytest(misbehaving)
    assert names(outcomes, "failed") == FAILED


def test_xdist_workers_check_their_own_tests(misbehaving):
    pytest.importorskip("xdist")
    result, outcomes = run_pytest(misbehaving, "--tallymalloc", "-n", "2", "--tallymalloc-top", "2")
    assert "2 workers" in result.stdout, result.stdout
    assert_misbehaving_tests_caught(outcomes)
    summary = result.stdout.split("the 2 tests whose memory peaked highest")[1]
    assert "test_breaks_the_limit\n" in summary and "test_breaks_the_limit_across_threads" in summary


def test_the_top_tests_by_peak_are_listed(misbehaving):
    result, _ = run_pytest(misbehaving, "--tallymalloc", "--tallymalloc-top", "3")
    summary = result.stdout.split("the 3 tests whose memory peaked highest")[1].splitlines()
    rows = [line.split() for line in summary[2:5]]
    assert {row[-1].split("::")[1] for row in rows[:2]} == {
        "test_breaks_the_limit",
        "test_breaks_the_limit_across_threads",
    }, summary
    # Two phases of 16 MiB peak at 16, not 32: the third, with 32 MiB allocated.
    assert rows[2][-1].endswith("test_behaves_in_phases"), summary
    assert rows[2][0].startswith("16.") and rows[2][1].startswith("32."), summary


def test_profiled_failures_name_their_sites(misbehaving):
    _, outcomes = run_pytest(misbehaving, "--tallymalloc", "--tallymalloc-profile")
    assert names(outcomes, "failed") == FAILED
    source = (misbehaving / MISBEHAVING).read_text().splitlines()
    line_of = {text.strip(): number for number, text in enumerate(source, 1)}
    over = outcomes["test_breaks_the_limit"][1]
    sites = over.split("Sites by bytes allocated during the test")[1].splitlines()
    first = f"test_breaks_the_limit ({MISBEHAVING}:{line_of['held = [bytearray(MiB) for _ in range(40)]']})"
    assert first in sites[1], over
    leak = outcomes["test_leaks"][1]
    sites = leak.split("Sites by bytes still live")[1].splitlines()
    kept = line_of["KEPT.append([bytearray(MiB) for _ in range(4)])"]
    assert f"test_leaks ({MISBEHAVING}:{kept})" in sites[1], leak
    assert "pytest_plugin" not in leak, "the plugin's own allocations are not the test's"


def test_bad_options_are_usage_errors(misbehaving):
    for flags, text in (
        (("--tallymalloc-top", "-1"), "--tallymalloc-top takes a count"),
        (("--tallymalloc-profile", "--tallymalloc-sample-bytes", "lots"), "bad size 'lots'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--tallymalloc", *flags],
            cwd=misbehaving,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 4 and text in result.stderr, result.stderr


def test_sizes_read_as_pytest_memray_reads_them():
    assert parse_size("24 MB") == 24 << 20
    assert parse_size("1.5 KiB") == 1536
    assert parse_size("512B") == 512
    assert parse_size("2gb") == 2 << 30
    assert parse_size(" +3 MiB ") == 3 << 20
    assert parse_size(100) == 100
    for bad in ("lots", "12", "1 iB", "1 KB extra", "MB", "-1 MB", ""):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in (None, 1.5, True, b"1 MB"):
        with pytest.raises(TypeError):
            parse_size(bad)
    assert format_size(512) == "512B" and format_size(117.2 * 1024) == "117.2KiB"




def test_cython_some_memory_leak_and_wrong_free_are_caught(tmp_path, preload_library):
    build_cython_extension(tmp_path, "pymem_memory")
    shutil.copy(os.path.join(HERE, "plugin", "cython_cases.py"), tmp_path / "test_cython_cases.py")
    # C's free() of a PyMem_Malloc block is tallymalloc's free only when the library is
    # preloaded; glibc would abort on it otherwise.
    _, outcomes = run_pytest(tmp_path, "--tallymalloc", env={"LD_PRELOAD": preload_library})
    assert names(outcomes, "passed") == {"test_some_memory_behaves"}, outcomes
    assert names(outcomes, "failed") == {
        "test_leaky_memory_leaks",
        "test_wrong_free_memory_frees_through_c",
    }, outcomes
    leak = outcomes["test_leaky_memory_leaks"][1]
    # 800,000 bytes asked; the block is usable to its size class or cached mapping, not less.
    found = re.search(r"of leaked memory, but ([\d.]+(?:B|KiB|MiB)) more are live", leak)
    assert found and parse_size(found.group(1)) >= 780_000, leak
    wrong = outcomes["test_wrong_free_memory_frees_through_c"][1]
    assert "1 block of domain 'mem' (PyMem_Malloc)" in wrong and "domain 'raw'" in wrong, wrong
