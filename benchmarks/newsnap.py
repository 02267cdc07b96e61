"""The landing folders of the year-end nights, derived from a scale's cached data.

    <out>/derived-<scale>-<key>/yearnight/  registry + snapshot + the year + the night
    <out>/derived-<scale>-<key>/newsnap/    the same + a new snapshot, 1 % of people changed

``yearnight`` is what the landing folder holds on the night after a year's backfill: the night
on the year-end warehouse reads it, and the floor over it computes the money of the whole
history. ``newsnap`` adds an enrolment snapshot dated the day after the year (``NEW_DATE``),
drawn from the cached one with polars: of 1 % of the people (picked by a hash of the identity
number), a quarter get a new payee account, a quarter a changed name, a quarter an enrolment
ended 60 days earlier, and a quarter a renewal (the latest enrolment ends the day before
``NEW_DATE`` and a new one starts on it). Everything is hard-linked except the new snapshot, and
written as the contract says (``synth.write_snapshot``: files and manifest). ``key`` hashes the
data key and this module, so a changed rule regenerates; a finished folder is marked
``.complete``. Generation runs in its own process (``python -m benchmarks.newsnap``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import data as bdata

if TYPE_CHECKING:
    import polars as pl

NEW_DATE = bdata.SNAPSHOT_DATE + timedelta(days=1)
CHANGED_SHARE = 0.01
KINDS = ("payee", "name", "ended", "renewed")
_SEED = 16


def change_people(
    enrollments: pl.DataFrame, *, share: float = CHANGED_SHARE, as_of: date = NEW_DATE
) -> tuple[pl.DataFrame, dict[str, int]]:
    """A new snapshot: ``share`` of the people changed (see the module); counts per kind."""
    import polars as pl

    buckets = 1_000_000
    draw = pl.col("national_id").hash(_SEED) % buckets
    picked = draw < int(share * buckets)
    kind = (pl.col("national_id").hash(_SEED + 1) % len(KINDS)).cast(pl.Int64)
    frame = enrollments.with_columns(
        pl.when(picked).then(kind).otherwise(-1).alias("_kind"),
        (pl.col("coverage_start").rank("ordinal", descending=True).over("national_id") == 1).alias(
            "_latest"
        ),
    )
    day_before = as_of - timedelta(days=1)
    open_end = pl.col("coverage_end").fill_null(pl.lit(day_before))
    is_ = {name: pl.col("_kind") == i for i, name in enumerate(KINDS)}
    # A new account of 16 digits, from the old one (stable, still 12–19 digits).
    new_payee = pl.lit("6230") + (pl.col("payee_account").hash(_SEED + 2) % 10**12).cast(
        pl.String
    ).str.zfill(12)
    # The last character of the name replaced (names stay CJK, same length).
    new_name = pl.col("member_name").str.slice(0, pl.col("member_name").str.len_chars() - 1) + (
        pl.when(pl.col("member_name").str.ends_with("华"))
        .then(pl.lit("伟"))
        .otherwise(pl.lit("华"))
    )
    ended = pl.max_horizontal(
        pl.col("coverage_start"),
        pl.min_horizontal(open_end, pl.lit(day_before)) - pl.duration(days=60),
    )
    renewable = is_["renewed"] & pl.col("_latest") & (pl.col("coverage_start") <= day_before)
    changed = frame.with_columns(
        pl.when(is_["payee"])
        .then(new_payee)
        .otherwise(pl.col("payee_account"))
        .alias("payee_account"),
        pl.when(is_["name"]).then(new_name).otherwise(pl.col("member_name")).alias("member_name"),
        pl.when(is_["ended"] & pl.col("_latest"))
        .then(ended)
        .when(renewable)
        .then(pl.min_horizontal(open_end, pl.lit(day_before)))
        .otherwise(pl.col("coverage_end"))
        .alias("coverage_end"),
    )
    renewals = (
        changed.filter(renewable)
        .with_row_index("_n")
        .with_columns(
            (pl.lit("N") + (pl.col("_n") + 1).cast(pl.String).str.zfill(9)).alias("enrollment_id"),
            pl.lit(as_of).alias("coverage_start"),
            pl.lit(None, dtype=pl.Date).alias("coverage_end"),
        )
        .drop("_n")
    )
    counts = {
        name: changed.filter(is_[name]).select(pl.col("national_id").n_unique()).item()
        for name in KINDS
    }
    counts["renewals"] = renewals.height
    counts["people"] = enrollments.select(pl.col("national_id").n_unique()).item()
    out = pl.concat([changed, renewals]).drop("_kind", "_latest").select(enrollments.columns)
    return out, counts


def _key(scale: bdata.Scale) -> str:
    blob = bdata.data_key(scale) + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _link_partitions(src: Path, dst: Path) -> None:
    """Hard-link the files under ``src`` into ``dst``, skipping those already there."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.hardlink_to(path)


def generate(dataset_root: Path, root: Path, snapshot_format: str) -> dict[str, Any]:
    """Write ``yearnight`` and ``newsnap`` under ``root`` from the dataset at ``dataset_root``."""
    import polars as pl

    import synth

    shutil.rmtree(root, ignore_errors=True)
    yearnight = root / "yearnight"
    _link_partitions(dataset_root / "year", yearnight)
    _link_partitions(dataset_root / "night", yearnight)
    newsnap = root / "newsnap"
    _link_partitions(yearnight, newsnap)
    old = dataset_root / "snapshot" / "enrollments" / f"snapshot_date={bdata.SNAPSHOT_DATE}"
    files = sorted(p for p in old.iterdir() if p.name.startswith("part-"))
    if snapshot_format == "parquet":
        frame = pl.read_parquet(files)
    else:
        frame = pl.read_csv(files, infer_schema=False).with_columns(
            pl.col("birth_date", "coverage_start", "coverage_end").str.to_date()
        )
    new, counts = change_people(frame)
    del frame
    synth.write_snapshot(
        newsnap, NEW_DATE, new, fmt=snapshot_format, typed=snapshot_format == "parquet"
    )
    info = {"rows": new.height, "snapshot_date": str(NEW_DATE), "changed": counts}
    (root / ".complete").write_text(json.dumps(info, indent=2))
    return info


def ensure(scale: bdata.Scale, dataset_root: Path, out: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The two landing folders (generated once per data and rule), and what the new one holds."""
    root = out / f"derived-{scale.name}-{_key(scale)}"
    marker = root / ".complete"
    if not marker.exists():
        for older in out.glob(f"derived-{scale.name}-*"):
            shutil.rmtree(older, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.newsnap",
                str(dataset_root),
                str(root),
                scale.snapshot_format,
            ],
            check=True,
        )
    info = json.loads(marker.read_text())
    return root / "yearnight", root / "newsnap", info


if __name__ == "__main__":
    print(json.dumps(generate(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])), flush=True)
