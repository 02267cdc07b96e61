"""Benchmark inputs: a 10 M-row enrolment snapshot, one night, a year of nights; cached on disk.

Everything is drawn with ``synth`` (vectorised, deterministic) and written as the inbound
contract says (feeds.md): registry, snapshot and partitions, each with its manifest. Three
landing folders share the registry and the snapshot (hard links, not symlinks: the contract
fails a partition whose file is a symbolic link):

    <out>/data-<scale>-<key>/snapshot/   registry + snapshot only       (benchmark 1)
    <out>/data-<scale>-<key>/night/      registry + snapshot + a night  (benchmark 2)
    <out>/data-<scale>-<key>/year/       registry + snapshot + 365 nights (benchmarks 3, 4)

``key`` hashes the scale's parameters and the generator's source, so a changed parameter or a
changed module of ``synth/`` regenerates, and an unchanged one is reused (``.complete`` marks a
finished folder; older folders of the same scale are deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from synth import Population

# Bump when the benchmark's own use of the generator changes what is written.
LAYOUT_VERSION = 1

SNAPSHOT_DATE = date(2026, 10, 31)
# A year of feed dates ending on the snapshot date: two benefit years, both rule sets of RETIREE.
YEAR_START = date(2025, 11, 1)
NIGHT_DATE = date(2026, 11, 2)
# Each source delivers in its own format: the pipeline reads all three, so does the floor.
SOURCE_FORMATS = {"SHYB": "csv", "HOSPX": "csv.gz", "MEDIX": "parquet"}


@dataclass(frozen=True)
class Scale:
    """What one ``--scale`` generates and how often each measurement is repeated."""

    name: str
    people: int  # ~1.38 enrolments each
    night_stays: int  # new stays in the measured night (plus the corrections and voids due)
    year_stays: int  # new stays per night of the backfill year
    year_nights: int
    sources: tuple[str, ...]
    snapshot_format: str = "parquet"  # "parquet" (typed) or "csv"
    seed: int = 20261031
    repeats: int = 3  # snapshot, night, floors, Prefect start: median of this many processes
    backfill_repeats: int = 1  # the backfill and its run_local twin: the longest runs

    def data_params(self) -> dict[str, object]:
        """The parameters that decide the generated files (not the repeats)."""
        params = asdict(self)
        params.pop("repeats")
        params.pop("backfill_repeats")
        return params


SCALES: dict[str, Scale] = {
    # 10 M enrolments, a 20 k night, ~5 M stays over 365 nights × 3 sources.
    "full": Scale("full", 7_250_000, 20_000, 14_000, 365, ("SHYB", "HOSPX", "MEDIX")),
    # For development: a tenth of the people, a month of nights.
    "medium": Scale("medium", 725_000, 20_000, 14_000, 30, ("SHYB", "HOSPX", "MEDIX")),
    # The test's scale: 100 k enrolments, a 2 k night, 10 partitions.
    "small": Scale(
        "small", 72_500, 2_000, 2_000, 5, ("SHYB", "HOSPX"), repeats=1, backfill_repeats=1
    ),
}


def scale_named(
    name: str, *, repeats: int | None = None, snapshot_format: str | None = None
) -> Scale:
    scale = SCALES[name]
    if repeats is not None:
        scale = replace(
            scale, repeats=repeats, backfill_repeats=min(repeats, scale.backfill_repeats)
        )
    if snapshot_format is not None:
        scale = replace(scale, snapshot_format=snapshot_format)
    return scale


@dataclass(frozen=True)
class Dataset:
    """Where a scale's generated landing folders are, and what they hold."""

    root: Path
    scale: Scale
    enrollments: int
    night_rows: int
    year_rows: int
    year_partitions: int
    generated_s: float  # 0 when reused from the cache

    @property
    def snapshot_landing(self) -> Path:
        return self.root / "snapshot"

    @property
    def night_landing(self) -> Path:
        return self.root / "night"

    @property
    def year_landing(self) -> Path:
        return self.root / "year"

    @property
    def snapshot_dir(self) -> Path:
        return self.snapshot_landing / "enrollments" / f"snapshot_date={SNAPSHOT_DATE}"

    @property
    def snapshot_file(self) -> Path:
        return next(p for p in sorted(self.snapshot_dir.iterdir()) if p.name.startswith("part-"))

    @property
    def year_first(self) -> date:
        return YEAR_START

    @property
    def year_last(self) -> date:
        return YEAR_START + timedelta(days=self.scale.year_nights - 1)


def _source_hash() -> str:
    import synth

    digest = hashlib.sha256()
    for module in sorted(Path(synth.__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return digest.hexdigest()[:16]


def data_key(scale: Scale) -> str:
    blob = json.dumps(
        {"layout": LAYOUT_VERSION, "synth": _source_hash(), **scale.data_params()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` under ``dst`` (same file system, no extra disk)."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def _write_nights(
    landing: Path,
    pop: Population,
    hospitals: pl.DataFrame,
    first: date,
    nights: int,
    n: int,
    scale: Scale,
    log: Callable[[str], None],
) -> int:
    """``nights`` feed dates from ``first``, ``n`` new stays each, a partition per source."""
    import synth

    rows = 0
    started = time.perf_counter()
    for i in range(nights):
        day = first + timedelta(days=i)
        frames = synth.make_stays(
            pop,
            hospitals,
            feed_date=day,
            n=n,
            seed=scale.seed,
            sources=scale.sources,
            history_start=first,
        )
        for source, frame in frames.items():
            fmt = SOURCE_FORMATS[source]
            synth.write_partition(landing, day, source, frame, fmt=fmt, typed=fmt == "parquet")
            rows += frame.height
        if nights > 1 and (i + 1) % 30 == 0:
            log(f"  {i + 1}/{nights} nights, {rows:,} rows, {time.perf_counter() - started:.0f} s")
    return rows


def ensure_dataset(scale: Scale, out: Path) -> Dataset:
    """The scale's landing folders under ``out``: reused when complete, else generated.

    Generation runs in a child process: a parent that once held 10 M rows would pass its size
    on to every process it starts (``benchmarks.measure``), and keep the memory besides.
    """
    marker = out / f"data-{scale.name}-{data_key(scale)}" / ".complete"
    generated = 0.0
    if not marker.exists():
        started = time.perf_counter()
        params = json.dumps(asdict(scale))
        subprocess.run([sys.executable, "-m", "benchmarks.data", params, str(out)], check=True)
        generated = time.perf_counter() - started
    info = json.loads(marker.read_text())
    return Dataset(
        marker.parent,
        scale,
        info["enrollments"],
        info["night_rows"],
        info["year_rows"],
        info["year_partitions"],
        generated,
    )


def generate(scale: Scale, out: Path, log: Callable[[str], None] = print) -> None:
    """Write the scale's landing folders under ``out``; older generations are deleted."""
    root = out / f"data-{scale.name}-{data_key(scale)}"
    # Keep the disk tidy: an older generation of this scale is no longer wanted.
    for old in out.glob(f"data-{scale.name}-*"):
        shutil.rmtree(old, ignore_errors=True)
    import synth

    started = time.perf_counter()
    log(f"generating {scale.name} data under {root} (cached for later runs)")
    pop = synth.make_population(scale.people, seed=scale.seed, as_of=SNAPSHOT_DATE)
    enrollments = pop.enrollments.height
    elapsed = time.perf_counter() - started
    log(f"  {enrollments:,} enrolments of {scale.people:,} people: {elapsed:.0f} s")
    hospitals = synth.make_hospitals(40, seed=scale.seed)

    snap = root / "snapshot"
    synth.write_registry(snap, hospitals)
    fmt = scale.snapshot_format
    synth.write_snapshot(snap, SNAPSHOT_DATE, pop.enrollments, fmt=fmt, typed=fmt == "parquet")
    log(f"  snapshot written ({fmt}): {time.perf_counter() - started:.0f} s")
    # The people table (stay odds) is all make_stays needs; free the 10 M enrolment rows.
    _ = pop.people
    pop.enrollments = pop.enrollments.clear()

    for name in ("night", "year"):
        _link_tree(snap, root / name)
    night_rows = _write_nights(
        root / "night", pop, hospitals, NIGHT_DATE, 1, scale.night_stays, scale, log
    )
    log(f"  night of {night_rows:,} rows: {time.perf_counter() - started:.0f} s")
    year_rows = _write_nights(
        root / "year", pop, hospitals, YEAR_START, scale.year_nights, scale.year_stays, scale, log
    )
    partitions = scale.year_nights * len(scale.sources)
    elapsed = time.perf_counter() - started
    log(f"  year of {year_rows:,} rows in {partitions} partitions: {elapsed:.0f} s")
    info = {
        "enrollments": enrollments,
        "night_rows": night_rows,
        "year_rows": year_rows,
        "year_partitions": partitions,
        "params": scale.data_params(),
        "generated_s": round(elapsed, 1),
    }
    (root / ".complete").write_text(json.dumps(info, indent=2, default=str))


if __name__ == "__main__":
    fields = json.loads(sys.argv[1])
    fields["sources"] = tuple(fields["sources"])
    generate(Scale(**fields), Path(sys.argv[2]), log=lambda m: print(m, flush=True))
