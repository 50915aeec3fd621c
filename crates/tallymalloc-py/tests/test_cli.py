"""`tallymalloc run` on this interpreter: the package's start-up install puts CPython's domains
in the report, and they share one set of stats with C's malloc (the preloaded library)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPOSITORY, run_script_on_tallymalloc

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


POOL = """
import multiprocessing, sys
def work(n):
    blocks = [bytearray(1000) for _ in range(n * 1000)]
    return len(blocks)
if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    with multiprocessing.Pool(3) as pool:  # leaving the block terminates the workers
        print(sum(pool.map(work, [1, 2, 3, 4, 5, 6], chunksize=1)))
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_run_follows_a_multiprocessing_pool(tmp_path, start_method):
    """A pool's workers are reported, each under the program, whether forked (they leave by
    os._exit, or are terminated by SIGTERM) or spawned (new interpreters)."""
    result, document = run_script_on_tallymalloc(tmp_path, POOL, arguments=[start_method])
    assert result.stdout.strip() == "21000"
    script = tmp_path / "program.py"
    program = document["process"]["pid"]
    # A forked worker keeps the program's command line; a spawned one runs spawn_main (beside
    # it, spawn starts a resource tracker, a process of its own).
    worker_command = str(script) if start_method == "fork" else "spawn_main"
    workers = [
        p
        for p in document["processes"]
        if p["process"]["parent_pid"] == program and worker_command in p["command"]
    ]
    assert len(workers) == 3, [(p["process"], p["command"]) for p in document["processes"]]
    # Each worker's CPython domains saw its share of the 21,000 bytearrays, all 21,000 between
    # them (a worker runs each task it takes; which takes which is up to the pool).
    allocations = sum(w["domains"]["obj"]["allocations"] for w in workers)
    assert allocations >= 21_000, allocations
    assert "processes: " in result.stderr
