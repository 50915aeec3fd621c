"""`tallymalloc run` on this interpreter: the package's start-up install puts CPython's domains
in the report, and they share one set of stats with C's malloc (the preloaded library)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPOSITORY

COMMAND = os.path.join(REPOSITORY, "target", "release", "tallymalloc")

SCRIPT = """
import tallymalloc
assert tallymalloc.installed() == ("raw", "mem", "obj"), tallymalloc.installed()
assert tallymalloc.library_origin() == "preloaded"
words = [str(n) * 4 for n in range(200_000)]
print(len(words))
"""


def test_run_reports_cpythons_domains(tmp_path):
    if not os.path.exists(COMMAND):
        pytest.skip("target/release/tallymalloc is not built")
    report = tmp_path / "report.json"
    environment = {k: v for k, v in os.environ.items() if k != "TALLYMALLOC_PYTHON"}
    result = subprocess.run(
        [COMMAND, "run", "--json", str(report), "--", sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200000"
    domains = json.loads(report.read_text())["domains"]
    assert domains["obj"]["allocations"] >= 200_000
    assert domains["obj"]["peak_bytes"] >= 200_000 * 48
    assert domains["mem"]["allocations"] > 0 and domains["raw"]["allocations"] > 0
    for name in ("raw", "mem", "obj"):
        assert domains[name]["mismatches"] == 0
        assert f"\n{name} " in result.stderr
