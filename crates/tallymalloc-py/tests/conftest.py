"""Shared helpers: running Python snippets in fresh interpreters (installing is once per
process and cannot be undone, so most install tests need their own)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import tallymalloc

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PRELOAD_LIBRARY = os.path.join(REPOSITORY, "target", "release", "libtallymalloc.so")
COMMAND = os.path.join(REPOSITORY, "target", "release", "tallymalloc")


def run_script_on_tallymalloc(directory, source, *flags, arguments=()):
    """Runs the Python program `source` with `tallymalloc run FLAGS --json`; returns the
    CompletedProcess and the JSON document (skips the test if the command is not built)."""
    if not os.path.exists(COMMAND):
        pytest.skip("target/release/tallymalloc is not built")
    script = directory / "program.py"
    script.write_text(source)
    report = directory / "report.json"
    result = subprocess.run(
        [COMMAND, "run", *flags, "--json", str(report), "--", sys.executable, str(script)]
        + list(arguments),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result, json.loads(report.read_text())


def build_cython_extension(directory, name):
    """Compiles `tests/cython/NAME.pyx` in place in `directory` with Cython and setuptools,
    with the package's headers on the include path (skips the test without Cython)."""
    pytest.importorskip("Cython")
    shutil.copy(os.path.join(HERE, "cython", f"{name}.pyx"), directory)
    (directory / "setup.py").write_text(
        textwrap.dedent(
            f"""
            from Cython.Build import cythonize
            from setuptools import Extension, setup
            import tallymalloc
            setup(
                name="{name}",
                ext_modules=cythonize(
                    [Extension("{name}", ["{name}.pyx"], include_dirs=[tallymalloc.get_include()])],
                    quiet=True,
                ),
            )
            """
        )
    )
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr


def run_python(code, *arguments, env=None, preload=False, timeout=300):
    """Runs `code` in a new interpreter; returns the CompletedProcess after checking it
    succeeded (its stderr is shown on failure)."""
    environment = dict(os.environ)
    environment.pop("TALLYMALLOC_PYTHON", None)
    environment.update(env or {})
    if preload:
        environment["LD_PRELOAD"] = PRELOAD_LIBRARY
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def python():
    return run_python


@pytest.fixture(scope="session")
def preload_library():
    if not os.path.exists(PRELOAD_LIBRARY):
        pytest.skip("target/release/libtallymalloc.so is not built")
    return PRELOAD_LIBRARY


def live(domain):
    return tallymalloc.stats().domains[domain]
