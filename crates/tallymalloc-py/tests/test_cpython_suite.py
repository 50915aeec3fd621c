"""A part of CPython's own test suite, run with TALLYMALLOC_PYTHON=1 so every interpreter it
starts (the parallel workers included) is served by tallymalloc. The library's exit reports
(TALLYMALLOC_STATS=json:...) prove the workers really ran on it."""

import glob
import json
import os
import subprocess
import sys

import pytest

MODULES = [
    "test_list",
    "test_dict",
    "test_set",
    "test_bytes",
    "test_json",
    "test_threading",
    "test_tuple",
    "test_deque",
    "test_memoryview",
    "test_array",
    "test_pickle",
    "test_collections",
    "test_re",
]


def test_cpython_regression_tests_pass_on_tallymalloc(tmp_path):
    if subprocess.run([sys.executable, "-c", "import test.libregrtest"]).returncode != 0:
        pytest.skip("this CPython has no test package")
    reports = tmp_path / "stats"
    reports.mkdir()
    environment = dict(os.environ)
    environment.update(
        TALLYMALLOC_PYTHON="1",
        TALLYMALLOC_STATS=f"json:{reports}/%p.json",
        TALLYMALLOC_ON_MISMATCH="abort",
    )
    result = subprocess.run(
        [sys.executable, "-m", "test", "-j2", "--timeout", "600", *MODULES],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "Tests result: SUCCESS" in result.stdout, result.stdout[-3000:]

    served = 0
    for path in glob.glob(str(reports / "*.json")):
        with open(path) as report:
            domains = json.load(report)["domains"]
        assert all(domains[name]["mismatches"] == 0 for name in ("raw", "mem", "obj")), path
        if domains["obj"]["allocations"] > 100_000:
            served += 1
    # The main process, and a worker for each module.
    assert served >= len(MODULES), sorted(os.listdir(reports))
