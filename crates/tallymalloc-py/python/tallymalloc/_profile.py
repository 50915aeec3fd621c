"""Sampled heap profiles from Python: ``profile()`` reads the library's profile as it stands
and returns its sites, each with its call stack, Python frames merged with the native ones
where the interpreter's evaluation loop ran them (as ``tallymalloc run --profile`` shows them).

Native frames are named here with ``dladdr`` (the exported symbol and the object file, no line
numbers); ``tallymalloc run --profile`` names them fully, with files, lines and inlined calls.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import _native

#: The C function that runs Python frames: each of its frames on a native stack stands for the
#: Python frames one call of it ran.
EVALUATION_LOOP = "_PyEval_EvalFrameDefault"


@dataclass(frozen=True)
class Frame:
    """One frame of a site's stack: a Python function (``kind == "python"``, its file and
    line) or a native one (``"native"``, its symbol and object file; line 0)."""

    function: str
    file: str
    line: int
    kind: str


@dataclass(frozen=True)
class ProfileSite:
    """An allocation site and what the samples estimate for it (unbiased estimates, not exact
    counts): bytes and allocations over the run, bytes and blocks live now, and at the moment
    the process's estimated live bytes were highest."""

    frames: Tuple[Frame, ...]
    allocated_bytes: int
    allocations: int
    live_bytes: int
    live_blocks: int
    peak_bytes: int
    peak_blocks: int


def profile() -> List[ProfileSite]:
    """The sampled heap profile so far, its sites by estimated bytes allocated, largest first,
    each with its frames innermost first. Empty unless profiling is on (``profile_enable()``,
    or ``TALLYMALLOC_PROFILE=1`` at start-up, as ``tallymalloc run --profile`` sets)."""
    descriptor, path = tempfile.mkstemp(prefix="tallymalloc-profile-")
    os.close(descriptor)
    try:
        _native._profile_write(path)
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    finally:
        os.unlink(path)
    return _parse(text)


def profile_enable(sample_bytes: Optional[int] = None) -> None:
    """Starts sampling allocations, one sample per ``sample_bytes`` bytes allocated on average
    (512 KiB unless set; from 1 to 2**40). Raises ValueError for a bad rate and RuntimeError in
    debug mode, which excludes profiling."""
    if sample_bytes is not None and (
        isinstance(sample_bytes, bool) or not isinstance(sample_bytes, int)
    ):
        raise TypeError(f"sample_bytes must be an int, not {type(sample_bytes).__name__}")
    if sample_bytes is not None and not 1 <= sample_bytes <= 1 << 40:
        raise ValueError(f"sample_bytes must be from 1 to 2**40, not {sample_bytes}")
    _native._profile_enable(sample_bytes)


def profile_disable() -> None:
    """Stops sampling; the profile so far stays."""
    _native._profile_disable()


def _parse(text: str) -> List[ProfileSite]:
    lines = text.splitlines()
    if not lines or lines[0] != "tallymalloc-profile 1":
        raise RuntimeError("the library wrote no profile it could read back")
    raw_sites = []
    for line in lines[1:]:
        words = line.split(" ")
        if words[0] == "site":
            raw_sites.append(words)
        elif words[0] == "maps":
            break
    symbols = _NativeSymbols()
    sites = [_site(words, symbols) for words in raw_sites]
    sites.sort(key=lambda site: site.allocated_bytes, reverse=True)
    return sites


def _site(words: List[str], symbols: "_NativeSymbols") -> ProfileSite:
    def figure(name: str) -> int:
        return int(words[words.index(name) + 1])

    start = words.index("frames") + 1
    end = words.index("python") if "python" in words else len(words)
    native = [symbols.frame(int(word, 16)) for word in words[start:end] if word]
    groups = _python_groups(words[end + 1 :]) if end < len(words) else []
    return ProfileSite(
        frames=tuple(merged(native, groups)),
        allocated_bytes=figure("allocated_bytes"),
        allocations=figure("allocations"),
        live_bytes=figure("live_bytes"),
        live_blocks=figure("live_blocks"),
        peak_bytes=figure("peak_bytes"),
        peak_blocks=figure("peak_blocks"),
    )


def _python_groups(words: List[str]) -> List[List[Frame]]:
    """The Python frames (``CODE:LINE[:entry]``, innermost first), in groups: each group the
    frames one call of the evaluation loop ran, the frame it entered last in the group."""
    groups: List[List[Frame]] = [[]]
    names: Dict[int, Tuple[str, str]] = {}
    for word in words:
        parts = word.split(":")
        code, line = int(parts[0], 16), int(parts[1])
        if code not in names:
            found = _native._python_code_names(code)
            names[code] = (str(found[0]), str(found[1])) if found else ("<python>", "")
        function, file = names[code]
        groups[-1].append(Frame(function, file, line, "python"))
        if parts[2:] == ["entry"]:
            groups.append([])
    return [group for group in groups if group]


def merged(native: List[Frame], groups: List[List[Frame]]) -> List[Frame]:
    """``native`` with each evaluation loop's frame replaced by the Python frames it ran, in
    order; groups left over (the native stack was cut short) go outermost."""
    frames: List[Frame] = []
    remaining = list(groups)
    for frame in native:
        if frame.function == EVALUATION_LOOP and remaining:
            frames.extend(remaining.pop(0))
        else:
            frames.append(frame)
    for group in remaining:
        frames.extend(group)
    return frames


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


class _NativeSymbols:
    """Return addresses named by ``dladdr``: the exported symbol and the object file."""

    def __init__(self) -> None:
        self._dladdr = ctypes.CDLL(None).dladdr
        self._dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        self._dladdr.restype = ctypes.c_int
        self._named: Dict[int, Frame] = {}

    def frame(self, address: int) -> Frame:
        if address not in self._named:
            info = _DlInfo()
            # The call's own address (a return address is the instruction after it).
            found = self._dladdr(address - 1, ctypes.byref(info))
            function = info.dli_sname.decode(errors="replace") if found and info.dli_sname else ""
            file = info.dli_fname.decode(errors="replace") if found and info.dli_fname else ""
            self._named[address] = Frame(function or f"0x{address:x}", file, 0, "native")
        return self._named[address]
