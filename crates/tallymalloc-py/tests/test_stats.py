"""The typed stats hold every figure the library writes, no more and no fewer, so the Python
face cannot drift from the core's declaration of them (the C headers and the JSON schema are
held to it by the Rust tests)."""

import dataclasses

import tallymalloc


def _fields(kind):
    fields = dataclasses.fields(kind)
    return {field.name: field.type for field in fields if not field.name.startswith("_")}


def _part_matches(kind, figures):
    assert set(_fields(kind)) == set(figures), kind.__name__
    for name, annotation in _fields(kind).items():
        expected = bool if annotation == "bool" else int
        assert type(figures[name]) is expected, (kind.__name__, name, figures[name])


def test_each_dataclass_holds_exactly_its_part_of_the_document():
    snapshot = tallymalloc.stats()
    document = snapshot.as_dict()
    for figures in document["domains"].values():
        _part_matches(tallymalloc.DomainStats, figures)
    for row in document["size_classes"]:
        _part_matches(tallymalloc.SizeClassStats, row)
    _part_matches(tallymalloc.HugeStats, document["huge"])
    _part_matches(tallymalloc.ProcessStats, document["process"])
    assert set(_fields(tallymalloc.Stats)) | {"version", "timeline"} == set(document)


def test_the_typed_figures_are_the_documents():
    keep = tallymalloc.Buffer(3 << 20)  # a huge block, live while the snapshot is taken
    snapshot = tallymalloc.stats()
    document = snapshot.as_dict()
    assert snapshot.huge == tallymalloc.HugeStats(**document["huge"])
    assert snapshot.huge.live_blocks >= 1 and snapshot.huge.live_bytes >= len(keep)
    assert snapshot.process.accounting_enabled is True
    assert snapshot.domains["raw"] == tallymalloc.DomainStats(**document["domains"]["raw"])


WATERMARK = """
import tallymalloc
assert "obj" in tallymalloc.installed()
tallymalloc.reset_watermark("obj")
base = tallymalloc.watermark("obj")
held = [bytes(1 << 20) for _ in range(20)]  # huge blocks: counted at once
del held
first = tallymalloc.watermark("obj") - base
assert first >= 20 << 20, first
tallymalloc.reset_watermark("obj")
one = bytes(1 << 20)
del one
second = tallymalloc.watermark("obj") - base
assert (1 << 20) <= second < (4 << 20), second
assert tallymalloc.stats().domains["obj"].peak_bytes >= base + (20 << 20)
# Every domain together: 16 MiB in obj, then 16 MiB in mem, peak at 16, not 32.
tallymalloc.reset_watermark()
start = tallymalloc.watermark()
held = bytes(16 << 20)
del held
held = tallymalloc.Buffer(16 << 20, domain="mem")
del held
together = tallymalloc.watermark() - start
assert (16 << 20) <= together < (20 << 20), together
assert tallymalloc.watermark("mem") >= 16 << 20
for bad, error in (("bad name!", ValueError), (3, TypeError)):
    try:
        tallymalloc.watermark(bad)
    except error:
        pass
    else:
        raise AssertionError(f"watermark({bad!r}) was accepted")
print("ok")
"""


def test_a_watermark_starts_again_while_the_peak_stays(python):
    assert python(WATERMARK, env={"TALLYMALLOC_PYTHON": "1"}).stdout.strip() == "ok"


MISMATCHES = """
import ctypes
import tallymalloc
api = ctypes.pythonapi
api.PyMem_Malloc.restype = api.PyObject_Malloc.restype = ctypes.c_void_p
api.PyMem_Malloc.argtypes = api.PyObject_Malloc.argtypes = [ctypes.c_size_t]
api.PyMem_RawFree.argtypes = api.PyMem_Free.argtypes = [ctypes.c_void_p]
assert tallymalloc.mismatches() == {}
for _ in range(2):
    api.PyMem_RawFree(api.PyMem_Malloc(100))
api.PyMem_Free(api.PyObject_Malloc(100))
found = tallymalloc.mismatches()
assert found == {("mem", "raw"): 2, ("obj", "mem"): 1}, found
assert tallymalloc.stats().domains["mem"].mismatches == 2
print("ok")
"""


def test_mismatches_are_counted_by_pair_of_domains(python):
    result = python(
        MISMATCHES, env={"TALLYMALLOC_PYTHON": "1", "TALLYMALLOC_ON_MISMATCH": "ignore"}
    )
    assert result.stdout.strip() == "ok"
