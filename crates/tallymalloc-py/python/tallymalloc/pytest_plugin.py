"""The pytest plugin: memory limits, leaks and mismatched frees fail the test that caused them.

Installed with the package (the ``pytest11`` entry point) and off unless asked for::

    pytest --tallymalloc                      # tallymalloc serves CPython's domains; every
                                              # test is checked for mismatched frees
    @pytest.mark.limit_memory("24 MB")        # fails if the test's memory peaked above 24 MiB
    @pytest.mark.limit_leaks("1 KB")          # fails if it left more than 1 KiB live
    pytest --tallymalloc --tallymalloc-top 5  # the five tests that held most, at the end
    pytest --tallymalloc --tallymalloc-profile  # failures name the sites (sampled profiles)

The markers and the size syntax are pytest-memray's (``"1.5 MB"``; ``KB``, ``MB``... are
powers of 1024, as there, and so are ``KiB``, ``MiB``...), so a project can switch by changing
its flag. What is measured is every block tallymalloc serves in any domain: CPython's raw, mem
and obj, domains C or Cython code registered, and C's ``malloc`` when the library is preloaded
(``LD_PRELOAD``). Blocks from before ``--tallymalloc`` installed it are pymalloc's and glibc's,
and not seen.

- ``limit_memory(limit)``: the most the test's call held at once above what was live when it
  started (a watermark of every domain together, not a sum of the domains' peaks), as precise
  as the stats' peaks: it may read low by up to 256 KiB per thread and domain.
- ``limit_leaks(limit, *, warmups=0)``: what is live after the call returns and a
  ``gc.collect()`` less what was live before it (after one too). Caches a test fills count,
  as in pytest-memray; ``warmups`` runs the test that many times first, unmeasured.
- A block freed through another domain's family during setup, call or teardown fails that
  phase, naming both domains. C's ``free`` of a ``PyMem_Malloc`` block is only seen, and
  survived, when the library is preloaded; otherwise glibc aborts on it.

Tests that fail on their own are not checked for limits. Each xdist worker checks its own
tests; ``--tallymalloc-top`` gathers them from the workers' reports.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

#: The figures a test's report carries (``user_properties``), for the summary across workers.
PROPERTY = "tallymalloc"

MARKERS = {
    "limit_memory": "limit_memory(limit): with --tallymalloc, fail the test if the memory it "
    "held at once (every tallymalloc domain) peaked above limit, e.g. '24 MB'",
    "limit_leaks": "limit_leaks(limit, *, warmups=0): with --tallymalloc, fail the test if more "
    "than limit of what it allocated is still live after it returns and a gc.collect()",
}

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"\s*\+?(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(i?)B\s*", re.IGNORECASE)


def parse_size(text: object) -> int:
    """Bytes in a size such as ``"24 MB"``, ``"1.5MiB"`` or ``"512 B"`` (units case-insensitive,
    powers of 1024), or an ``int`` of bytes. Raises ValueError (TypeError for other types)."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise TypeError(f"a size is a str such as '24 MB' or an int of bytes, not {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    match = _SIZE.fullmatch(text)
    if match is None or (match.group(3) and not match.group(2)):
        raise ValueError(
            f"bad size {text!r}: use a number and a unit, B, KB, MB, GB, TB or PB (or KiB, "
            "MiB, ...), e.g. '24 MB' or '1.5 KiB'"
        )
    number, prefix = match.group(1), match.group(2).upper()
    return int(float(number) * _UNITS[prefix])


def format_size(size: float) -> str:
    """``size`` bytes with a binary unit, as pytest-memray prints them (``"117.2KiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.1f}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Limits:
    """A test's markers, checked: the limits in bytes, and the unmeasured runs first."""

    memory: Optional[int] = None
    leaks: Optional[int] = None
    warmups: int = 0


LIMITS = pytest.StashKey[Limits]()


def limits_of(item: pytest.Item) -> Limits:
    """The test's ``limit_memory`` and ``limit_leaks``, or pytest.UsageError naming the test and
    what is wrong with the marker."""
    memory = leaks = None
    warmups = 0
    for name in MARKERS:
        marker = item.get_closest_marker(name)
        if marker is None:
            continue
        where = f"{item.nodeid}: @pytest.mark.{name}"
        arguments = dict(marker.kwargs)
        allowed = {"limit", "warmups"} if name == "limit_leaks" else {"limit"}
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise pytest.UsageError(f"{where} takes no argument {', '.join(unknown)}")
        positional = list(marker.args)
        if "limit" not in arguments and positional:
            arguments["limit"] = positional.pop(0)
        if positional or "limit" not in arguments:
            raise pytest.UsageError(f"{where} takes one limit, such as '24 MB'")
        try:
            limit = parse_size(arguments["limit"])
        except (TypeError, ValueError) as error:
            raise pytest.UsageError(f"{where}: {error}") from None
        if name == "limit_memory":
            memory = limit
        else:
            leaks = limit
            warmups = arguments.get("warmups", 0)
            if isinstance(warmups, bool) or not isinstance(warmups, int) or warmups < 0:
                raise pytest.UsageError(f"{where}: warmups must be an int of 0 or more")
    if (memory is not None or leaks is not None) and _is_async(item):
        raise pytest.UsageError(
            f"{item.nodeid}: limit_memory and limit_leaks measure plain functions, not "
            "coroutines"
        )
    return Limits(memory, leaks, warmups)


def _is_async(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tallymalloc", "tallymalloc memory checks")
    group.addoption(
        "--tallymalloc",
        action="store_true",
        default=None,
        help="serve CPython's allocator domains with tallymalloc and check every test: "
        "limit_memory and limit_leaks markers, and frees through the wrong domain",
    )
    group.addoption(
        "--tallymalloc-top",
        type=int,
        default=0,
        metavar="N",
        help="with --tallymalloc, list the N tests whose memory peaked highest at the end",
    )
    group.addoption(
        "--tallymalloc-profile",
        action="store_true",
        default=False,
        help="with --tallymalloc, sample allocations so that failures name their sites",
    )
    group.addoption(
        "--tallymalloc-sample-bytes",
        default="16 KiB",
        metavar="SIZE",
        help="with --tallymalloc-profile, one sample per SIZE allocated on average "
        "(default: 16 KiB, finer than the library's 512 KiB so small leaks are seen)",
    )
    parser.addini("tallymalloc", "check tests as --tallymalloc does", type="bool")


def pytest_configure(config: pytest.Config) -> None:
    # Registered whether or not the plugin is on, so --strict-markers passes without it.
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", text)
    enabled = config.getoption("tallymalloc")
    if enabled is None:
        enabled = config.getini("tallymalloc")
    if not enabled:
        return
    top = config.getoption("tallymalloc_top")
    if top < 0:
        raise pytest.UsageError(f"--tallymalloc-top takes a count of 0 or more, not {top}")
    sample_bytes = None
    if config.getoption("tallymalloc_profile"):
        text = config.getoption("tallymalloc_sample_bytes")
        try:
            sample_bytes = parse_size(text)
        except ValueError as error:
            raise pytest.UsageError(f"--tallymalloc-sample-bytes: {error}") from None
        if not 1 <= sample_bytes <= 1 << 40:
            raise pytest.UsageError("--tallymalloc-sample-bytes: from 1 B to 1 TiB")
    config.pluginmanager.register(Checker(config, top, sample_bytes), "tallymalloc-checker")


@dataclass(frozen=True)
class Totals:
    """Every domain's figures added up, at one moment."""

    live_bytes: int
    live_blocks: int
    allocated_bytes: int
    allocations: int

    @staticmethod
    def now() -> "Totals":
        from . import _native

        live, _peak, blocks, allocations, _frees, allocated, _mismatches = _native._all_domains()
        return Totals(live, blocks, allocated, allocations)


class Checker:
    """The plugin at work (registered by ``--tallymalloc``)."""

    def __init__(self, config: pytest.Config, top: int, sample_bytes: Optional[int]) -> None:
        import tallymalloc

        self.config = config
        self.top = top
        self.profiling = sample_bytes is not None
        self.figures: Dict[str, Dict[str, int]] = {}
        tallymalloc.install()
        if self.profiling:
            tallymalloc.profile_enable(sample_bytes)

    # Mismatched frees fail the phase they happen in.

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        # A bad marker is the test's setup error, said in one line, before its fixtures run.
        try:
            item.stash[LIMITS] = limits_of(item)
        except pytest.UsageError as error:
            problem = str(error)
        else:
            problem = None
        if problem is not None:
            pytest.fail(f"usage error: {problem}", pytrace=False)
        return (yield from _mismatches_checked("setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        return (yield from _mismatches_checked("the test"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        return (yield from _mismatches_checked("teardown"))

    # Limits: measured around the test function itself, as close as a hook gets.

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Iterator[None]:
        limits = pyfuncitem.stash.get(LIMITS, Limits())
        if _is_async(pyfuncitem):
            return (yield)
        function = pyfuncitem.obj
        measured: List[Measure] = []

        @functools.wraps(function)
        def measuring(*args, **kwargs):
            for _ in range(limits.warmups):
                function(*args, **kwargs)
            with Measure(limits.leaks is not None, self.profiling and limits != Limits()) as m:
                result = function(*args, **kwargs)
            measured.append(m)
            return result

        pyfuncitem.obj = measuring
        try:
            result = yield
        finally:
            pyfuncitem.obj = function
        if measured:
            self._check(pyfuncitem, limits, measured[0])
        return result

    def _check(self, item: pytest.Function, limits: Limits, measure: "Measure") -> None:
        item.user_properties.append(
            (
                PROPERTY,
                {
                    "peak_bytes": measure.peak_bytes,
                    "allocated_bytes": measure.allocated_bytes,
                    "allocations": measure.allocations,
                },
            )
        )
        problems = []
        if limits.memory is not None and measure.peak_bytes > limits.memory:
            problems.append(
                f"Test was limited to {format_size(limits.memory)} but its memory peaked at "
                f"{format_size(measure.peak_bytes)} (tallymalloc, every domain together)"
                + measure.sites("allocated_bytes", "allocated during the test")
            )
        if limits.leaks is not None and measure.leaked_bytes > limits.leaks:
            problems.append(
                f"Test was limited to {format_size(limits.leaks)} of leaked memory, but "
                f"{format_size(measure.leaked_bytes)} more are live after it returned and "
                f"gc.collect() than before it ran ({measure.leaked_blocks:+} blocks)"
                + measure.sites("live_bytes", "still live")
            )
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)

    # The summary, from every report (the workers' too, under xdist).

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == PROPERTY:
                self.figures[report.nodeid] = dict(value)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.top or not self.figures:
            return
        ranked = sorted(self.figures.items(), key=lambda entry: -entry[1]["peak_bytes"])
        ranked = ranked[: self.top]
        terminalreporter.write_sep(
            "=", f"tallymalloc: the {len(ranked)} tests whose memory peaked highest"
        )
        terminalreporter.write_line(f"{'peak':>10} {'allocated':>10} {'allocations':>12}  test")
        for nodeid, figures in ranked:
            terminalreporter.write_line(
                f"{format_size(figures['peak_bytes']):>10} "
                f"{format_size(figures['allocated_bytes']):>10} "
                f"{figures['allocations']:>12}  {nodeid}"
            )


def _mismatches_checked(phase: str) -> Iterator[None]:
    """The body of a phase's wrapper: the phase, then a failure if it freed a block through
    another domain's family (a note on its own failure if it failed already)."""
    import tallymalloc

    before = tallymalloc.mismatches()
    try:
        result = yield
    except Exception as error:
        new = _new_mismatches(before, tallymalloc.mismatches())
        if new and hasattr(error, "add_note"):
            error.add_note(_describe_mismatches(new, phase))
        raise
    new = _new_mismatches(before, tallymalloc.mismatches())
    if new:
        pytest.fail(_describe_mismatches(new, phase), pytrace=False)
    return result


def _new_mismatches(
    before: Dict[Tuple[str, str], int], after: Dict[Tuple[str, str], int]
) -> Dict[Tuple[str, str], int]:
    return {
        pair: count - before.get(pair, 0)
        for pair, count in after.items()
        if count > before.get(pair, 0)
    }


_FAMILIES = {
    "raw": "PyMem_RawMalloc (or C's malloc, preloaded)",
    "mem": "PyMem_Malloc",
    "obj": "PyObject_Malloc",
}
_FREES = {
    "raw": "PyMem_RawFree (or C's free, preloaded)",
    "mem": "PyMem_Free",
    "obj": "PyObject_Free",
}


def _describe_mismatches(new: Dict[Tuple[str, str], int], phase: str) -> str:
    lines = [f"tallymalloc: {phase} freed blocks through the wrong family:"]
    for (owner, through), count in sorted(new.items()):
        blocks = "block" if count == 1 else "blocks"
        lines.append(
            f"  {count} {blocks} of domain '{owner}' ({_FAMILIES.get(owner, 'tm_domain_malloc')})"
            f" freed or resized through domain '{through}' "
            f"({_FREES.get(through, 'tm_domain_free')})"
        )
    return "\n".join(lines)


class Measure:
    """What a test's call did to every domain: its peak above what was live at its start, what
    it allocated, and (with ``collect``) what it left live after ``gc.collect()``. With
    ``sites``, the sampled profile before and after, to name where it came from."""

    def __init__(self, collect: bool, sites: bool) -> None:
        self.collect = collect
        self.with_sites = sites

    def __enter__(self) -> "Measure":
        import tallymalloc

        # The profile first: reading it leaves garbage, which the collection then frees.
        self.profile_before = _by_frames(tallymalloc.profile()) if self.with_sites else {}
        if self.collect:
            gc.collect()
        self.before = Totals.now()
        tallymalloc.reset_watermark()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        import tallymalloc

        if kind is not None:
            return
        self.peak_bytes = max(0, tallymalloc.watermark() - self.before.live_bytes)
        if self.collect:
            gc.collect()
        after = Totals.now()
        self.allocated_bytes = after.allocated_bytes - self.before.allocated_bytes
        self.allocations = after.allocations - self.before.allocations
        self.leaked_bytes = after.live_bytes - self.before.live_bytes
        self.leaked_blocks = after.live_blocks - self.before.live_blocks
        self.profile_after = _by_frames(tallymalloc.profile()) if self.with_sites else {}

    def sites(self, figure: str, what: str, count: int = 5) -> str:
        """The sites whose ``figure`` grew most during the test, as lines; "" unless profiled."""
        if not self.with_sites:
            return ""
        growth = []
        for frames, site in self.profile_after.items():
            if _is_our_own(frames):
                continue
            earlier = self.profile_before.get(frames)
            grown = getattr(site, figure) - (getattr(earlier, figure) if earlier else 0)
            if grown > 0:
                growth.append((grown, frames))
        growth.sort(key=lambda entry: -entry[0])
        if not growth:
            return "\nno sampled site (sampling may have missed small blocks)"
        lines = [f"\nSites by bytes {what} (sampled estimates):"]
        for grown, frames in growth[:count]:
            lines.append(f"  {format_size(grown):>10}  {_describe_frames(frames)}")
        return "\n".join(lines)


def _by_frames(sites) -> dict:
    return {site.frames: site for site in sites}


#: This package's directory: frames in it are the plugin's and the profile reader's.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_our_own(frames) -> bool:
    """Whether a site is this plugin's own work (reading the profile), not the test's: it has a
    frame in the package other than the wrapper that calls the test."""
    return any(
        frame.kind == "python"
        and frame.file.startswith(_PACKAGE)
        and not frame.function.endswith(".measuring")
        for frame in frames
    )


def _describe_frames(frames, depth: int = 4) -> str:
    """A site's innermost Python frames up to where the plugin called the test (its native
    frames if it has no Python ones), outward."""
    python = [frame for frame in frames if frame.kind == "python"]
    for index, frame in enumerate(python):
        if frame.file.startswith(_PACKAGE):
            python = python[:index]
            break
    chosen = python or [frame for frame in frames if frame.function]
    return " <- ".join(
        f"{frame.function} ({_shown_path(frame.file)}:{frame.line})"
        if frame.kind == "python"
        else f"{frame.function} ({os.path.basename(frame.file)})"
        for frame in chosen[:depth]
    )


def _shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
