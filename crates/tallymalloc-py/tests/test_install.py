"""tallymalloc.install(): CPython's domains served by tallymalloc, in fresh interpreters."""

import json

import pytest

WORKLOAD = r"""
import json, sys, threading, tallymalloc
assert tallymalloc.install() == ("raw", "mem", "obj")

# json round trips of nested documents
document = {"rows": [{"id": n, "name": f"row-{n}", "tags": [str(t) for t in range(n % 7)]}
                     for n in range(20000)]}
for _ in range(3):
    document = json.loads(json.dumps(document))
assert document["rows"][19999] == {"id": 19999, "name": "row-19999",
                                   "tags": ["0", "1", "2", "3", "4", "5"][:19999 % 7]}

# dict and list churn
table = {}
for n in range(200000):
    table[n % 5000] = [n] * (n % 13)
    if n % 3 == 0:
        table.pop((n * 7) % 5000, None)
total = sum(len(value) for value in table.values())

# threads allocating and freeing at once (the raw domain runs without the GIL)
results = [None] * 8
def work(index):
    words = {}
    for n in range(30000):
        words.setdefault(str(n % 997), []).append(bytes(n % 300))
    results[index] = sum(len(v) for v in words.values())
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
assert results == [30000] * 8, results

try:
    import numpy
except ImportError:
    numpy = None
if numpy is not None:
    matrix = numpy.arange(250000, dtype=numpy.float64).reshape(500, 500)
    assert float((matrix @ numpy.eye(500)).sum()) == float(matrix.sum()) == 31249875000.0

stats = tallymalloc.stats()
assert all(stats.domains[d].allocations > 0 for d in ("mem", "obj")), stats.domains
assert all(stats.domains[d].mismatches == 0 for d in ("raw", "mem", "obj")), stats.domains
print(json.dumps({"total": total, "origin": tallymalloc.library_origin()}))
"""


@pytest.mark.parametrize("preload", [False, True], ids=["bundled", "preloaded"])
def test_a_real_workload_gives_correct_results(python, preload, preload_library):
    result = python(WORKLOAD, preload=preload)
    report = json.loads(result.stdout)
    assert report["total"] > 0
    assert (report["origin"] == "preloaded") == preload
    assert "invalid pointer" not in result.stderr and "family" not in result.stderr


def test_each_domain_moves_with_what_the_program_allocates(python):
    result = python(
        r"""
        import json, tallymalloc
        tallymalloc.install()
        def live():
            domains = tallymalloc.stats().domains
            return {name: domains[name].live_bytes for name in ("raw", "mem", "obj")}
        before = live()
        chunks = [bytes(1000) + str(n).encode() for n in range(10000)]  # about 10 MB of bytes
        during = live()
        del chunks
        after = live()
        print(json.dumps([before, during, after]))
        """
    )
    before, during, after = json.loads(result.stdout)
    grown = (during["obj"] + during["mem"]) - (before["obj"] + before["mem"])
    # 10000 bytes objects of about 1037 bytes each (header included), plus the list; live
    # bytes are usable bytes, up to a size class's rounding (under 25%) more.
    assert 10_400_000 <= grown <= 13_500_000, (before, during)
    assert abs((after["obj"] + after["mem"]) - (before["obj"] + before["mem"])) < 512 * 1024


BEFORE_AND_AFTER = r"""
import tallymalloc
# Blocks from the previous allocators: small (pymalloc) and large (its raw fallback).
small = [str(n) * 3 for n in range(50000)]
large = [bytearray(b"x" * (1000 + n)) for n in range(2000)]
growing = list(range(1000))
mapping = {n: n for n in range(10000)}
tallymalloc.install()
for n in range(100000):                # realloc of the old list's foreign array
    growing.append(n)
for array in large[:500]:              # realloc of old bytearrays, then free
    array.extend(b"y" * 5000)
mapping.update({n: -n for n in range(10000, 40000)})
assert small[49999] == "49999" * 3 and large[10][:1] == b"x" and large[10][-1:] == b"y"
del small, large, mapping              # frees of foreign blocks
assert len(growing) == 101000 and growing[-1] == 99999
stats = tallymalloc.stats()
assert all(stats.domains[d].mismatches == 0 for d in ("raw", "mem", "obj")), stats.domains
print("ok")
"""


@pytest.mark.parametrize("preload", [False, True], ids=["bundled", "preloaded"])
def test_blocks_from_before_install_go_back_to_their_allocator(python, preload, preload_library):
    result = python(BEFORE_AND_AFTER, preload=preload)
    assert result.stdout.strip() == "ok"
    assert "invalid pointer" not in result.stderr and "family" not in result.stderr


def test_install_is_idempotent_and_checks_its_arguments(python):
    result = python(
        r"""
        import threading, tallymalloc
        assert tallymalloc.installed() == ()
        assert tallymalloc.install(["mem"]) == ("mem",)
        threads = [threading.Thread(target=tallymalloc.install) for _ in range(8)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        assert tallymalloc.install() == ("raw", "mem", "obj")
        for bad, error in ((["heap"], ValueError), ([3], TypeError), (7, TypeError)):
            try:
                tallymalloc.install(bad)
            except error as raised:
                print(type(raised).__name__, raised)
            else:
                raise AssertionError(f"install({bad!r}) did not raise")
        """
    )
    assert "ValueError unknown CPython domain 'heap'" in result.stdout
    assert "TypeError a domain name is a str, not int" in result.stdout


def test_a_mismatched_free_is_reported_not_corrupting(python):
    # PyMem_Free of a PyObject_Malloc block, through ctypes: tallymalloc sees the wrong family.
    result = python(
        r"""
        import ctypes, tallymalloc
        tallymalloc.install()
        api = ctypes.pythonapi
        api.PyObject_Malloc.restype = ctypes.c_void_p
        api.PyObject_Malloc.argtypes = [ctypes.c_size_t]
        api.PyMem_Free.argtypes = [ctypes.c_void_p]
        block = api.PyObject_Malloc(64)
        api.PyMem_Free(block)
        print(tallymalloc.stats().domains["obj"].mismatches)
        """,
        env={"TALLYMALLOC_ON_MISMATCH": "warn"},
    )
    assert result.stdout.strip() == "1"
    assert "'mem' family, but the block belongs to 'obj'" in result.stderr


def test_running_out_of_address_space_raises_memory_error_and_python_carries_on(python):
    result = python(
        r"""
        import resource, tallymalloc
        tallymalloc.install()
        with open("/proc/self/status") as status:
            size_kib = next(int(l.split()[1]) for l in status if l.startswith("VmSize:"))
        limit = size_kib * 1024 + (256 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        failures = 0
        try:
            bytearray(1 << 30)                      # one huge block
        except MemoryError:
            failures += 1
        pieces = []
        try:
            for _ in range(20000):                  # 2 GB in 100 KB blocks: runs out midway
                pieces.append(bytes(100_000))
        except MemoryError:
            failures += 1
        assert 0 < len(pieces) < 20000, len(pieces)
        kept = len(pieces)
        pieces.clear()
        # Freed memory serves again, and ordinary work goes on.
        again = [bytes(100_000) for _ in range(kept // 2)]
        words = {str(n): n for n in range(100_000)}
        assert failures == 2 and len(again) == kept // 2 and words["99999"] == 99999
        print("ok", kept)
        """
    )
    assert result.stdout.startswith("ok ")
