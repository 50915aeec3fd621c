"""A Cython extension that cimports tallymalloc: Cython's SomeMemory class on the C API."""

import gc
import sys

import pytest
from conftest import build_cython_extension

import tallymalloc


@pytest.fixture(scope="module")
def somememory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cython")
    build_cython_extension(directory, "somememory")
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
