"""tracemalloc and tallymalloc started and stopped in any order: tracemalloc.stop() puts back
the allocators it found at its start, so tallymalloc installs beneath a tracing tracemalloc
(stopping it and starting it again). Every run here has TALLYMALLOC_ON_MISMATCH=abort and
checks that no domain counted a mismatch, with the bundled library and with the C library
preloaded (then every malloc of the process is tallymalloc's too)."""

import itertools
import os
import subprocess
import sys

import pytest

from conftest import PRELOAD_LIBRARY

STRICT = {"TALLYMALLOC_ON_MISMATCH": "abort"}
WARNING = "tracemalloc was tracing, so it was stopped and started again"

# Blocks of every domain made in one phase and freed in a later one: strings and lists (obj),
# a bytearray past pymalloc's 512 bytes (mem, then raw beneath), and a dict of many entries.
PHASES = """
import sys, tallymalloc, tracemalloc
kept = []
def allocate():
    kept.append(([str(i) * 3 for i in range(3000)], bytearray(4000), {i: [i] for i in range(500)}))
def free_oldest():
    if kept:
        del kept[0]
def step(name):
    if name == "install":
        tallymalloc.install()
    elif name == "start":
        tracemalloc.start(7)
    elif name == "stop":
        tracemalloc.stop()
for name in sys.argv[1:]:
    allocate()
    step(name)
    free_oldest()
    allocate()
    if name == "start" or (name == "install" and tracemalloc.is_tracing()):
        assert tracemalloc.get_traceback_limit() == 7, tracemalloc.get_traceback_limit()
        assert tracemalloc.get_traced_memory()[0] > 100_000, tracemalloc.get_traced_memory()
del kept[:]
mismatches = sum(tallymalloc.stats().domains[d].mismatches for d in ("raw", "mem", "obj"))
print("served", tallymalloc.installed(), "mismatches", mismatches)
"""


def run(arguments, env=None, preload=False, timeout=300):
    environment = dict(os.environ)
    environment.pop("TALLYMALLOC_PYTHON", None)
    environment.pop("PYTHONTRACEMALLOC", None)
    environment.update(STRICT)
    environment.update(env or {})
    if preload:
        environment["LD_PRELOAD"] = PRELOAD_LIBRARY
    return subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def check(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "mismatch" not in result.stderr, result.stderr
    return result


@pytest.fixture(params=[False, True], ids=["bundled", "preloaded"])
def preload(request, preload_library):
    return request.param


def test_the_issue_snippet_survives_and_warns(preload):
    snippet = (
        "import tracemalloc; tracemalloc.start()\n"
        "import tallymalloc; tallymalloc.install()\n"
        "x = [str(i) for i in range(10000)]\n"
        "tracemalloc.stop()\n"
        "del x\n"
        "print('survived', tallymalloc.installed(), tracemalloc.is_tracing())\n"
    )
    result = check(run(["-c", snippet], preload=preload))
    assert result.stdout.strip() == "survived ('raw', 'mem', 'obj') False"
    assert WARNING in result.stderr and "traceback limit 1" in result.stderr


# Every order of install, start and stop that tracemalloc allows (stop when not tracing is a
# no-op), each step between allocations and frees of every domain.
ORDERS = sorted(
    {
        order
        for length in range(1, 5)
        for order in itertools.product(("install", "start", "stop"), repeat=length)
        if "install" in order and order.count("install") <= 2
    }
)


@pytest.mark.parametrize("preloaded", [False, True], ids=["bundled", "preloaded"])
def test_every_order_of_install_start_and_stop(preloaded, preload_library):
    # One interpreter per order; run side by side to keep the whole under a minute.
    processes = []
    for order in ORDERS:
        environment = dict(os.environ)
        environment.pop("TALLYMALLOC_PYTHON", None)
        environment.update(STRICT)
        if preloaded:
            environment["LD_PRELOAD"] = preload_library
        process = subprocess.Popen(
            [sys.executable, "-c", PHASES, *order],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        processes.append((order, process))
        if len(processes) >= 8:
            finish(*processes.pop(0))
    for order, process in processes:
        finish(order, process)


def finish(order, process):
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, f"{order}: exit {process.returncode}\n{stdout}\n{stderr}"
    assert "mismatches 0" in stdout and "('raw', 'mem', 'obj')" in stdout, f"{order}: {stdout}"
    assert "mismatch" not in stderr, f"{order}: {stderr}"


def test_pythontracemalloc_with_the_startup_install(preload):
    code = (
        "import tracemalloc, tallymalloc\n"
        "x = [str(i) for i in range(10000)]\n"
        "print(tallymalloc.installed(), tracemalloc.is_tracing(),"
        " tracemalloc.get_traceback_limit())\n"
    )
    result = check(
        run(
            ["-c", code],
            env={"PYTHONTRACEMALLOC": "5", "TALLYMALLOC_PYTHON": "1"},
            preload=preload,
        )
    )
    # Still tracing, with the limit asked for, and the interpreter's exit (which stops
    # tracemalloc) went well.
    assert result.stdout.strip() == "('raw', 'mem', 'obj') True 5"


def test_x_tracemalloc_with_python_m_tallymalloc(tmp_path, preload):
    script = tmp_path / "script.py"
    script.write_text(
        "import tracemalloc, tallymalloc\n"
        "x = {i: str(i) for i in range(10000)}\n"
        "print(tallymalloc.installed(), tracemalloc.is_tracing(),"
        " tracemalloc.get_traced_memory()[0] > 100_000)\n"
        "tracemalloc.stop()\n"
        "del x\n"
    )
    result = check(
        run(["-X", "tracemalloc=3", "-m", "tallymalloc", str(script)], preload=preload)
    )
    assert result.stdout.strip() == "('raw', 'mem', 'obj') True True"
    assert "traceback limit 3" in result.stderr


def test_no_warning_when_tracemalloc_is_not_tracing():
    result = check(run(["-c", "import tallymalloc; tallymalloc.install()"]))
    assert WARNING not in result.stderr
    # Asking did not leave _tracemalloc imported.
    code = "import sys, tallymalloc; tallymalloc.install(); print('_tracemalloc' in sys.modules)"
    assert check(run(["-c", code])).stdout.strip() == "False"


def test_cpython_test_tracemalloc_passes_on_tallymalloc(tmp_path, preload):
    if run(["-c", "import test.test_tracemalloc"]).returncode != 0:
        pytest.skip("this CPython has no test package")
    result = run(
        ["-m", "test", "test_tracemalloc"],
        env={"TALLYMALLOC_PYTHON": "1"},
        preload=preload,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "Result: SUCCESS" in result.stdout, result.stdout[-3000:]
    assert "mismatch" not in result.stderr, result.stderr[-3000:]


def test_an_unknown_hook_beneath_gets_a_warning():
    # _testcapi.set_nomemory wraps CPython's allocators with a hook of its own (failing no
    # allocation here); tallymalloc cannot restart it as it does tracemalloc, so it says so.
    code = (
        "import _testcapi, tallymalloc\n"
        "_testcapi.set_nomemory(10**9)\n"
        "tallymalloc.install()\n"
        "print(tallymalloc.installed())\n"
    )
    if run(["-c", "import _testcapi"]).returncode != 0:
        pytest.skip("this CPython has no _testcapi")
    result = check(run(["-c", code]))
    assert "a hook (installed with PyMem_SetAllocator) that tallymalloc does not know" in (
        result.stderr.replace("\n", " ")
    ), result.stderr
    # CPython's own allocators get no warning, nor does a second install.
    result = check(run(["-c", "import tallymalloc; tallymalloc.install(); tallymalloc.install()"]))
    assert "does not know" not in result.stderr, result.stderr
