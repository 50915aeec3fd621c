"""tallymalloc for Python: CPython's allocator domains served and counted by tallymalloc.

    import tallymalloc
    tallymalloc.install()                 # raw, mem and obj now come from tallymalloc
    print(tallymalloc.stats().domains["obj"].live_bytes)
    tallymalloc.report()                  # the human table

    buffer = tallymalloc.Buffer(1000, format="d")   # 1000 doubles, freed with the object
    memoryview(buffer)[0] = 1.5

Run a script with tallymalloc installed from its first line: ``python -m tallymalloc
script.py``, or set ``TALLYMALLOC_PYTHON=1`` for every interpreter that has the package.
Cython code can ``cimport tallymalloc`` (see ``__init__.pxd``); C extensions include
``tallymalloc_api.h`` from :func:`get_include`.
"""

from __future__ import annotations

# Only what start-up already has: TALLYMALLOC_PYTHON=1 imports this package in every
# interpreter, and programs (CPython's own tests among them) check what start-up imported.
import _thread
import os
import sys
from . import _native
from ._native import API_VERSION, Buffer, library_origin

TYPE_CHECKING = False  # typing itself is not imported at start-up
if TYPE_CHECKING:
    from typing import Iterable, Optional, TextIO, Tuple

    from typing import Dict, List

    from ._profile import Frame, ProfileSite
    from ._stats import DomainStats, HugeStats, ProcessStats, SizeClassStats, Stats

__all__ = [
    "API_VERSION",
    "Buffer",
    "DomainStats",
    "Frame",
    "HugeStats",
    "ProcessStats",
    "ProfileSite",
    "SizeClassStats",
    "Stats",
    "get_include",
    "install",
    "installed",
    "library_origin",
    "library_path",
    "mismatches",
    "profile",
    "profile_disable",
    "profile_enable",
    "report",
    "reset_watermark",
    "stats",
    "watermark",
]

#: CPython's allocator domains, in the order CPython numbers them.
DOMAINS: Tuple[str, ...] = ("raw", "mem", "obj")

_install_lock = _thread.allocate_lock()


def _free_threaded() -> bool:
    # Free-threaded builds carry "t" in their ABI flags (python3.13t).
    return "t" in getattr(sys, "abiflags", "")


def _default_domains() -> Tuple[str, ...]:
    # A free-threaded CPython requires its own mimalloc for objects.
    return ("raw", "mem") if _free_threaded() else DOMAINS


def install(domains: Optional[Iterable[str]] = None) -> Tuple[str, ...]:
    """Makes tallymalloc serve CPython's allocator ``domains`` ("raw", "mem", "obj"; all
    three by default, "raw" and "mem" on a free-threaded build).

    Blocks the previous allocator handed out stay its own: freeing or resizing one after
    ``install`` goes back to it. Calling ``install`` again, from any thread, is harmless.

    If tracemalloc is tracing, it is stopped and started again with the same traceback limit
    around the install, with a RuntimeWarning: tracemalloc then wraps tallymalloc, so that
    ``tracemalloc.stop()`` puts tallymalloc back rather than the allocator tracemalloc found
    at its start (which would then receive tallymalloc's blocks). What tracemalloc traced
    before ``install`` is no longer traced. tracemalloc started after ``install`` needs
    nothing of the kind.
    Returns the domains served now. Raises TypeError or ValueError for a bad domain name,
    and RuntimeError for "obj" on a free-threaded build; nothing is installed then.
    """
    wanted = _default_domains() if domains is None else _checked_domains(domains)
    if "obj" in wanted and _free_threaded():
        raise RuntimeError(
            "this is a free-threaded CPython, which needs its own mimalloc for the 'obj' "
            "domain: install only 'raw' and 'mem'"
        )
    with _install_lock:
        missing = [name for name in wanted if name not in installed()]
        tracer = _tracemalloc_if_tracing() if missing else None
        if tracer is None:
            if missing and not installed() and _native._current_allocator_name() is None:
                import warnings

                warnings.warn(
                    "tallymalloc.install(): CPython's allocators are wrapped by a hook "
                    "(installed with PyMem_SetAllocator) that tallymalloc does not know; "
                    "tallymalloc serves above it, and if the hook later puts back the "
                    "allocators it wrapped, they will receive tallymalloc's blocks",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _install_domains(missing)
        else:
            # tracemalloc.stop() puts back the allocators tracemalloc found when it started:
            # were we installed above it, stop() would discard us while our blocks live. So
            # we go beneath it: stopped, it restores those allocators, we wrap them, and
            # started again it wraps us, and its stop() later puts us back.
            limit = tracer.get_traceback_limit()
            tracer.stop()
            try:
                _install_domains(missing)
            finally:
                tracer.start(limit)
            import warnings

            warnings.warn(
                "tallymalloc.install(): tracemalloc was tracing, so it was stopped and "
                f"started again (traceback limit {limit}) to trace tallymalloc's "
                "allocations; what it traced before install() is no longer traced",
                RuntimeWarning,
                stacklevel=2,
            )
    return installed()


def _install_domains(names) -> None:
    global _naming_at_exit
    for name in names:
        _native._install_domain(DOMAINS.index(name))
    if names and not _naming_at_exit:
        # The profile written at exit names the Python code its samples ran: the names are
        # read now, while the interpreter is whole (atexit is built in, loaded at start-up).
        import atexit

        atexit.register(_name_python_codes)
        _naming_at_exit = True


_naming_at_exit = False


def _name_python_codes() -> None:
    try:
        _native._name_python_codes()
    except RuntimeError:
        pass  # a library too old for profiles has none to name


def _tracemalloc_if_tracing():
    """The ``_tracemalloc`` module if tracemalloc is tracing, else None. It is imported only
    to ask, and left unimported if the answer is no (start-up imports nothing new)."""
    imported = "_tracemalloc" in sys.modules
    import _tracemalloc

    if _tracemalloc.is_tracing():
        return _tracemalloc
    if not imported:
        del sys.modules["_tracemalloc"]
    return None


def _checked_domains(domains: Iterable[str]) -> Tuple[str, ...]:
    if isinstance(domains, str):
        domains = (domains,)
    try:
        names = tuple(domains)
    except TypeError:
        raise TypeError("domains must be an iterable of domain names") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a domain name is a str, not {type(name).__name__}")
        if name not in DOMAINS:
            raise ValueError(f"unknown CPython domain {name!r}: use 'raw', 'mem' or 'obj'")
    return names


def installed() -> Tuple[str, ...]:
    """The CPython domains tallymalloc serves, in CPython's order."""
    return tuple(_native._installed_domains())


def stats() -> Stats:
    """A snapshot of tallymalloc's accounting: every domain (CPython's, ``raw`` including C's
    ``malloc`` when the library is preloaded, and any a program registered), the size-class
    histogram and the process figures. ``stats().as_dict()`` is the stats JSON's shape."""
    from ._stats import Stats

    return Stats.from_json(_native._stats_json())


def reset_watermark(domain: Optional[str] = None) -> None:
    """Starts the watermark of ``domain``, or of every domain together if None, again from the
    bytes it holds now: ``watermark(domain)`` then gives the most it held since, while
    ``stats()``' ``peak_bytes`` stay the process's. For measuring a part of a run (a test).
    Raises TypeError or ValueError for a bad domain name."""
    _native._watermark_reset(_domain_name(domain))


def watermark(domain: Optional[str] = None) -> int:
    """The most ``domain`` held (usable bytes), or every domain together if None (not a sum of
    their peaks: the most they held at once), since ``reset_watermark(domain)`` or since the
    process started, as precise as a ``peak_bytes``. Raises TypeError or ValueError for a bad
    domain name."""
    return _native._watermark(_domain_name(domain))


def mismatches() -> Dict[Tuple[str, str], int]:
    """Blocks freed or resized through another domain's family, by pair: ``{(allocated in,
    freed through): count}`` (``("mem", "raw")`` for a ``PyMem_Malloc`` block given to
    ``PyMem_RawFree``, or to C's ``free`` when the library is preloaded). Each block was still
    freed correctly; ``TALLYMALLOC_ON_MISMATCH`` says whether it was also reported."""
    return {(owner, through): count for owner, through, count in _native._mismatches()}


def _domain_name(domain: object) -> Optional[str]:
    if domain is not None and not isinstance(domain, str):
        raise TypeError(f"a domain name is a str, not {type(domain).__name__}")
    return domain


def report(file: Optional[TextIO] = None) -> None:
    """Prints the human stats table (on ``sys.stdout`` unless ``file`` is given)."""
    print(_native._stats_text(), end="", file=sys.stdout if file is None else file)


def profile() -> List[ProfileSite]:
    """The sampled heap profile so far: its sites by estimated bytes allocated, largest first,
    each with its frames, innermost first (Python frames merged where the interpreter ran them,
    native ones named by their exported symbol). Empty unless profiling is on
    (``profile_enable()``, or ``TALLYMALLOC_PROFILE=1`` as ``tallymalloc run --profile`` sets).
    Raises RuntimeError if the library loaded is too old for profiles."""
    from ._profile import profile as read

    return read()


def profile_enable(sample_bytes: Optional[int] = None) -> None:
    """Starts sampling allocations: one sample per ``sample_bytes`` allocated on average (512
    KiB unless given; 1 to 2**40). Raises TypeError or ValueError for a bad rate, and
    RuntimeError in debug mode, which excludes profiling."""
    from ._profile import profile_enable as enable

    enable(sample_bytes)


def profile_disable() -> None:
    """Stops sampling; the profile so far stays."""
    _native._profile_disable()


def get_include() -> str:
    """The directory holding ``tallymalloc_api.h`` (the C API through the Python package) and
    ``tallymalloc.h`` (the C library's own), for C extensions that use them."""
    return os.path.join(os.path.dirname(__file__), "include")


def library_path() -> str:
    """The C library this package loads when the process has none preloaded:
    ``$TALLYMALLOC_LIB``, or the one the package carries. What ``LD_PRELOAD`` takes to put a
    whole program, Python or not, on tallymalloc."""
    return os.environ.get("TALLYMALLOC_LIB") or os.path.join(
        os.path.dirname(__file__), "libtallymalloc.so"
    )


def __getattr__(name: str):
    # The stats types load with the first use, not at start-up.
    if name in ("DomainStats", "HugeStats", "ProcessStats", "SizeClassStats", "Stats"):
        from . import _stats

        return getattr(_stats, name)
    if name in ("Frame", "ProfileSite"):
        from . import _profile

        return getattr(_profile, name)
    raise AttributeError(f"module 'tallymalloc' has no attribute {name!r}")
