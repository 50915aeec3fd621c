"""tallymalloc.Buffer: owned memory, resize semantics, exports and the buffer protocol."""

import gc
import struct
import weakref

import pytest

import tallymalloc
from conftest import live


def test_typed_views_carry_format_itemsize_and_shape():
    view = memoryview(tallymalloc.Buffer(10, format="d"))
    assert (view.format, view.itemsize, view.shape, view.nbytes) == ("d", 8, (10,), 80)
    assert view.readonly is False and view.contiguous
    for code in ("b", "B", "h", "i", "l", "q", "Q", "n", "f", "?", "c"):
        buffer = tallymalloc.Buffer(3, format=code)
        assert buffer.itemsize == struct.calcsize(code) == memoryview(buffer).itemsize
        assert memoryview(buffer).format == code


def test_items_slices_bytes_and_repr():
    buffer = tallymalloc.Buffer(5, format="i", zeroed=True)
    assert len(buffer) == 5 and buffer[4] == 0 and bytes(buffer) == bytes(20)
    for index in range(5):
        buffer[index] = index * index - 3
    assert [buffer[index] for index in range(5)] == [-3, -2, 1, 6, 13]
    assert buffer[-1] == 13
    part = buffer[1:5:2]
    assert isinstance(part, tallymalloc.Buffer) and list(memoryview(part)) == [-2, 6]
    part[0] = 100
    assert buffer[1] == -2, "a slice is a copy"
    assert bytes(buffer) == struct.pack("5i", -3, -2, 1, 6, 13)
    assert repr(buffer) == "tallymalloc.Buffer(5, format='i', domain='mem')"
    with pytest.raises(IndexError):
        buffer[5]
    with pytest.raises(TypeError):
        buffer[0] = "not a number"


def test_resize_keeps_contents_and_zeroes_growth_when_zeroed():
    buffer = tallymalloc.Buffer(4, format="B", zeroed=True)
    buffer[:] = b"abcd"
    buffer.resize(100_000)
    assert bytes(buffer)[:4] == b"abcd" and bytes(buffer)[4:] == bytes(99_996)
    buffer.resize(2)
    assert bytes(buffer) == b"ab"
    buffer.resize(0)
    assert len(buffer) == 0 and bytes(buffer) == b""
    buffer.resize(3)
    assert bytes(buffer) == bytes(3)


def test_an_absurd_resize_raises_memory_error_and_leaves_the_buffer_intact():
    buffer = tallymalloc.Buffer(6, format="B")
    buffer[:] = b"intact"
    address = buffer.address
    for size in (2**62, 2**80):
        with pytest.raises(MemoryError):
            buffer.resize(size)
    assert bytes(buffer) == b"intact" and buffer.address == address and len(buffer) == 6
    with pytest.raises(MemoryError):
        tallymalloc.Buffer(2**61, format="d")


def test_resizing_an_exported_buffer_raises_buffer_error():
    buffer = tallymalloc.Buffer(8, format="B")
    view = memoryview(buffer)
    assert buffer.exports == 1
    with pytest.raises(BufferError, match="exported"):
        buffer.resize(16)
    view.release()
    assert buffer.exports == 0
    buffer.resize(16)
    with memoryview(buffer)[2:4] as part:
        assert buffer.exports == 1 and len(part) == 2
    assert buffer.exports == 0


def test_numpy_shares_the_memory_and_holds_an_export():
    numpy = pytest.importorskip("numpy")
    buffer = tallymalloc.Buffer(6, format="d", zeroed=True)
    array = numpy.frombuffer(buffer, dtype=numpy.float64)
    array[:] = numpy.arange(6) * 1.5
    assert buffer[5] == 7.5 and array.ctypes.data == buffer.address
    with pytest.raises(BufferError):
        buffer.resize(12)
    del array
    gc.collect()
    buffer.resize(12)
    assert buffer[5] == 7.5


def test_memory_is_released_when_the_object_dies():
    domain = "buffer-lifetime"
    before = tallymalloc.Buffer(0, domain=domain)  # registers the domain
    baseline = live(domain).live_blocks
    buffer = tallymalloc.Buffer(1 << 20, domain=domain)
    assert buffer.domain == domain
    assert live(domain).live_blocks == baseline + 1
    assert live(domain).live_bytes >= (1 << 20)
    reference = weakref.ref(buffer)
    cycle = [buffer]
    cycle.append(cycle)
    del buffer, cycle
    gc.collect()
    assert reference() is None
    assert live(domain).live_blocks == baseline
    del before


@pytest.mark.parametrize(
    "arguments, keywords, error, message",
    [
        ((-1,), {}, ValueError, "must not be negative"),
        (("10",), {}, TypeError, "must be an int"),
        ((1.5,), {}, TypeError, "must be an int"),
        ((10,), {"format": "x"}, ValueError, "unknown format 'x'"),
        ((10,), {"format": 3}, TypeError, "format"),
        ((10,), {"domain": "no spaces allowed"}, ValueError, "bad domain name 'no spaces allowed'"),
        ((10,), {"domain": None}, TypeError, "domain"),
    ],
)
def test_bad_arguments_get_clear_errors(arguments, keywords, error, message):
    with pytest.raises(error, match=message):
        tallymalloc.Buffer(*arguments, **keywords)


def test_stats_have_the_json_shape_and_typed_fields():
    snapshot = tallymalloc.stats()
    document = snapshot.as_dict()
    assert set(document) >= {"version", "domains", "size_classes", "process"}
    assert document["domains"]["mem"]["live_bytes"] == snapshot.domains["mem"].live_bytes
    assert {"raw", "mem", "obj"} <= set(snapshot.domains)
    assert snapshot.process.reserved_bytes >= snapshot.process.committed_bytes > 0
    assert [row.size for row in snapshot.size_classes] == sorted(
        row.size for row in snapshot.size_classes
    )


def test_report_prints_the_table(capsys):
    tallymalloc.report()
    table = capsys.readouterr().out
    assert "domain" in table and "live KiB" in table and "\nmem " in table
