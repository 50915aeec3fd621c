"""The typed stats: the stats JSON (docs/stats-schema.json) as dataclasses.

Each dataclass holds every figure of its part of the document, as the core declares them
(``tests/test_stats.py`` compares the two); fields added later go at the end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass(frozen=True)
class DomainStats:
    """One allocator domain's figures. Bytes are usable bytes outside debug mode."""

    live_bytes: int
    peak_bytes: int
    live_blocks: int
    allocations: int
    frees: int
    allocated_bytes: int
    mismatches: int
    live_usable_bytes: int
    peak_time_ms: int


@dataclass(frozen=True)
class SizeClassStats:
    """Live blocks of one size class."""

    size: int
    live_blocks: int
    live_bytes: int


@dataclass(frozen=True)
class HugeStats:
    """Live blocks beyond the largest size class, each in a mapping of its own."""

    live_blocks: int
    live_bytes: int


@dataclass(frozen=True)
class ProcessStats:
    """Process-wide figures: address space reserved and committed, resident memory."""

    reserved_bytes: int
    committed_bytes: int
    resident_bytes: int
    segments: int
    threads_seen: int
    uptime_ms: int
    pages: int
    abandoned_segments: int
    requested_sizes_exact: bool
    accounting_enabled: bool
    pid: int
    parent_pid: int


@dataclass(frozen=True)
class Stats:
    """A snapshot of tallymalloc's accounting."""

    domains: Dict[str, DomainStats]
    size_classes: List[SizeClassStats]
    process: ProcessStats
    huge: HugeStats
    command: str
    _document: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, text: str) -> "Stats":
        document = json.loads(text)
        return cls(
            domains={
                name: _typed(DomainStats, figures) for name, figures in document["domains"].items()
            },
            size_classes=[_typed(SizeClassStats, row) for row in document["size_classes"]],
            process=_typed(ProcessStats, document["process"]),
            huge=_typed(HugeStats, document["huge"]),
            command=document["command"],
            _document=document,
        )

    def as_dict(self) -> Dict[str, Any]:
        """The stats in the stats JSON's shape (a fresh copy)."""
        return json.loads(json.dumps(self._document))


def _typed(kind: Any, figures: Dict[str, Any]) -> Any:
    """``kind`` built from the figures of the same names (a newer library's extra ones are left
    in the document)."""
    return kind(**{name: figures[name] for name in kind.__dataclass_fields__})
