"""A Cython extension that cimports tallymalloc: Cython's SomeMemory class on the C API."""

import gc
import os
import shutil
import subprocess
import sys

import pytest

import tallymalloc

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = """
from Cython.Build import cythonize
from setuptools import Extension, setup
import tallymalloc
setup(
    name="somememory",
    ext_modules=cythonize(
        [Extension("somememory", ["somememory.pyx"], include_dirs=[tallymalloc.get_include()])],
        quiet=True,
    ),
)
"""


@pytest.fixture(scope="module")
def somememory(tmp_path_factory):
    pytest.importorskip("Cython")
    directory = tmp_path_factory.mktemp("cython")
    shutil.copy(os.path.join(HERE, "cython", "somememory.pyx"), directory)
    (directory / "setup.py").write_text(SETUP)
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    sys.path.insert(0, str(directory))
    try:
        import somememory
    finally:
        sys.path.remove(str(directory))
    return somememory


def test_some_memory_allocates_resizes_and_releases_in_its_domain(somememory):
    live_blocks, live_bytes, allocations, frees = somememory.domain_figures("somememory")
    memory = somememory.SomeMemory(1000)
    memory.fill(1.0)
    assert memory.total() == sum(1.0 + n for n in range(1000))
    figures = somememory.domain_figures("somememory")
    assert figures[0] == live_blocks + 1 and figures[1] >= live_bytes + 8000
    assert figures[2] == allocations + 1

    memory.resize(100_000)  # moves to a larger block: the first 1000 values survive
    assert len(memory) == 100_000
    memory.resize(1000)
    assert memory.total() == sum(1.0 + n for n in range(1000))
    assert somememory.domain_figures("somememory")[1] >= live_bytes + 8000

    with pytest.raises(MemoryError):
        memory.resize(2**60)
    assert memory.total() == sum(1.0 + n for n in range(1000)), "contents kept on failure"

    del memory
    gc.collect()
    after = somememory.domain_figures("somememory")
    assert after[0] == live_blocks and after[1] == live_bytes
    assert after[3] > frees
    # The Python side reads the same accounting.
    assert tallymalloc.stats().domains["somememory"].live_blocks == live_blocks
