"""The Cython SomeMemory example under the plugin (tests/test_pytest_plugin.py runs it with the
library preloaded): the guide's class behaves, a forgotten __dealloc__ leaks, and C's free() of
a PyMem_Malloc block is a mismatch."""

import pytest

import pymem_memory


@pytest.mark.limit_leaks("64 KB")
def test_some_memory_behaves():
    memory = pymem_memory.SomeMemory(100_000)
    memory.resize(200_000)
    del memory


@pytest.mark.limit_leaks("64 KB")
def test_leaky_memory_leaks():
    memory = pymem_memory.LeakyMemory(100_000)  # 800 kB never freed
    del memory


def test_wrong_free_memory_frees_through_c():
    memory = pymem_memory.WrongFreeMemory(1000)
    del memory
