"""Discover discharge partitions and enrolment snapshots in the landing folder.

A partition is one folder ``discharges/feed_date=D/source=S/`` (or
``enrollments/snapshot_date=D/``); it is ready once its ``_manifest.json`` exists. Folders whose
names do not follow the contract are reported, never read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

MANIFEST = "_manifest.json"
SOURCE_RE = re.compile(r"^[A-Z0-9_]{2,16}$")
DISCHARGE_KEY_RE = re.compile(r"^feed_date=(\d{4}-\d{2}-\d{2})/source=([A-Z0-9_]{2,16})$")
SNAPSHOT_KEY_RE = re.compile(r"^snapshot_date=(\d{4}-\d{2}-\d{2})$")

DISCHARGES = "discharges"
ENROLLMENTS = "enrollments"


class PartitionKeyError(ValueError):
    """A partition key that does not follow the contract's pattern."""


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else None
    except ValueError:
        return None


@dataclass(frozen=True, order=True)
class Partition:
    """One delivery folder; ordered by (kind, date, source) which is also the conflict order."""

    kind: str  # "discharges" or "enrollments"
    day: date  # feed_date or snapshot_date
    source: str  # "" for enrolment snapshots
    path: Path

    @property
    def key(self) -> str:
        """``feed_date=D/source=S`` or ``snapshot_date=D``: the name used everywhere."""
        if self.kind == DISCHARGES:
            return f"feed_date={self.day.isoformat()}/source={self.source}"
        return f"snapshot_date={self.day.isoformat()}"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def is_ready(self) -> bool:
        """The sender writes the manifest last: without it the delivery is in progress."""
        return self.manifest_path.is_file() and not self.manifest_path.is_symlink()

    def content_hash(self) -> str:
        """The partition's content is its manifest: a changed manifest is a new delivery."""
        return hashlib.sha256(self.manifest_path.read_bytes()).hexdigest()


def parse_discharge_key(key: str) -> tuple[date, str]:
    """Check a ``feed_date=D/source=S`` key from the command line before it is used anywhere."""
    m = DISCHARGE_KEY_RE.fullmatch(key)
    day = _parse_date(m.group(1)) if m else None
    if m is None or day is None:
        raise PartitionKeyError(
            "a partition key looks like feed_date=YYYY-MM-DD/source=SOURCE "
            "(SOURCE: 2-16 of A-Z, 0-9, _)"
        )
    return day, m.group(2)


def discharge_partition(landing: Path, key: str) -> Partition:
    """The partition a (checked) key names, whether or not it exists on disk."""
    day, source = parse_discharge_key(key)
    folder = landing / DISCHARGES / f"feed_date={day.isoformat()}" / f"source={source}"
    return Partition(DISCHARGES, day, source, folder)


@dataclass(frozen=True)
class Discovery:
    """What the landing folder holds right now."""

    discharges: list[Partition]
    snapshots: list[Partition]
    # Folders that do not follow the contract's naming: reported, never read.
    ignored: list[str]


def _dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    # A symlinked folder could point outside the landing folder: it is not a partition.
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink())


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def discover(landing: Path) -> Discovery:
    """List discharge partitions and enrolment snapshots, in (date, source) order."""
    ignored: list[str] = []
    discharges: list[Partition] = []
    for day_dir in _dirs(landing / DISCHARGES):
        if not _visible(day_dir.name):
            continue
        m = re.fullmatch(r"feed_date=(.*)", day_dir.name)
        day = _parse_date(m.group(1)) if m else None
        if day is None:
            ignored.append(f"{DISCHARGES}/{day_dir.name}")
            continue
        for src_dir in _dirs(day_dir):
            if not _visible(src_dir.name):
                continue
            m = re.fullmatch(r"source=(.*)", src_dir.name)
            if m is None or not SOURCE_RE.fullmatch(m.group(1)):
                ignored.append(f"{DISCHARGES}/{day_dir.name}/{src_dir.name}")
                continue
            discharges.append(Partition(DISCHARGES, day, m.group(1), src_dir))
    snapshots: list[Partition] = []
    for snap_dir in _dirs(landing / ENROLLMENTS):
        if not _visible(snap_dir.name):
            continue
        m = re.fullmatch(r"snapshot_date=(.*)", snap_dir.name)
        day = _parse_date(m.group(1)) if m else None
        if day is None:
            ignored.append(f"{ENROLLMENTS}/{snap_dir.name}")
            continue
        snapshots.append(Partition(ENROLLMENTS, day, "", snap_dir))
    return Discovery(sorted(discharges), sorted(snapshots), ignored)
