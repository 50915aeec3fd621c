"""Tests for the plugin's own test (tests/test_pytest_plugin.py), run in a subprocess: some
behave, some break a limit, leak or free through the wrong family. Each name says which."""

import ctypes
import threading

import pytest

api = ctypes.pythonapi
api.PyMem_Malloc.restype = ctypes.c_void_p
api.PyMem_Malloc.argtypes = [ctypes.c_size_t]
api.PyMem_RawFree.argtypes = [ctypes.c_void_p]
api.PyMem_Free.argtypes = [ctypes.c_void_p]
MiB = 1 << 20
KEPT = []


def test_behaves():
    data = [bytes(1000) for _ in range(1000)]
    del data


@pytest.mark.limit_memory("24 MB")
def test_behaves_within_the_limit():
    held = [bytearray(MiB) for _ in range(8)]
    del held


@pytest.mark.limit_memory("24 MB")
def test_breaks_the_limit():
    held = [bytearray(MiB) for _ in range(40)]
    del held


@pytest.mark.limit_memory("24 MB")
def test_breaks_the_limit_across_threads():
    # Four threads each hold 10 MiB at once: no thread alone passes the limit.
    ready = threading.Barrier(4)

    def hold():
        held = [bytearray(MiB) for _ in range(10)]
        ready.wait()
        del held

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.limit_memory("24 MB")
def test_behaves_in_phases():
    # 16 MiB twice, one after the other: the peak is 16, not 32.
    for _ in range(2):
        held = [bytearray(MiB) for _ in range(16)]
        del held


@pytest.mark.limit_leaks("1 MB")
def test_leaks():
    KEPT.append([bytearray(MiB) for _ in range(4)])


@pytest.mark.limit_leaks("1 MB")
def test_behaves_without_leaking():
    held = [bytearray(MiB) for _ in range(8)]
    del held


@pytest.mark.limit_leaks("1 MB", warmups=1)
def test_behaves_after_warming_a_cache(cache={}):
    cache.setdefault("table", [bytearray(MiB) for _ in range(4)])


def test_frees_through_the_wrong_family():
    # Over 512 bytes: without tallymalloc, pymalloc takes it from malloc, so this is harmless.
    block = api.PyMem_Malloc(MiB)
    api.PyMem_RawFree(block)


@pytest.fixture
def block_freed_wrongly_at_teardown():
    block = api.PyMem_Malloc(MiB)
    yield
    api.PyMem_RawFree(block)


def test_frees_through_the_wrong_family_at_teardown(block_freed_wrongly_at_teardown):
    pass


@pytest.mark.limit_memory("lots")
def test_bad_marker():
    pass
