"""The Python part of the benchmark suite runs (quick, one repetition) and writes its JSON."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPOSITORY

BENCH = os.path.join(REPOSITORY, "target", "release", "tallymalloc-bench")


def test_the_python_suite_runs_and_writes_well_formed_json(tmp_path):
    if not os.path.exists(BENCH):
        pytest.skip("target/release/tallymalloc-bench is not built")
    document_path = tmp_path / "python.json"
    result = subprocess.run(
        [BENCH, "--python", "--quick", "--reps", "1", "--python-interpreter", sys.executable,
         "--json", str(document_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "vs pymalloc" in result.stdout
    document = json.loads(document_path.read_text())
    setups = document["allocators"]
    assert setups[:4] == ["pymalloc", "tallymalloc", "tallymalloc-preloaded", "malloc"]
    names = [workload["name"] for workload in document["workloads"]]
    assert names == ["object_churn", "json_round_trip", "pickle_round_trip", "container_growth",
                     "text_processing"]
    for workload in document["workloads"]:
        for setup in setups:
            figures = workload["results"][setup]
            assert figures["median_seconds"] > 0 and figures["median_peak_rss_bytes"] > 0
            assert len(figures["runs"]) == 1
    assert document["tallymalloc_vs"]["pymalloc"]["time"] > 0
