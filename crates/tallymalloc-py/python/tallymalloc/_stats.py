"""The typed stats: the stats JSON (docs/stats-schema.json) as dataclasses."""

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


@dataclass(frozen=True)
class SizeClassStats:
    """Live blocks of one size class."""

    size: int
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


@dataclass(frozen=True)
class Stats:
    """A snapshot of tallymalloc's accounting."""

    domains: Dict[str, DomainStats]
    size_classes: List[SizeClassStats]
    process: ProcessStats
    _document: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, text: str) -> "Stats":
        document = json.loads(text)
        domains = {
            name: DomainStats(**{key: figures[key] for key in DomainStats.__dataclass_fields__})
            for name, figures in document["domains"].items()
        }
        size_classes = [
            SizeClassStats(**{key: row[key] for key in SizeClassStats.__dataclass_fields__})
            for row in document["size_classes"]
        ]
        process = document["process"]
        return cls(
            domains=domains,
            size_classes=size_classes,
            process=ProcessStats(**{key: process[key] for key in ProcessStats.__dataclass_fields__}),
            _document=document,
        )

    def as_dict(self) -> Dict[str, Any]:
        """The stats in the stats JSON's shape (a fresh copy)."""
        return json.loads(json.dumps(self._document))
