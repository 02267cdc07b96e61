"""A typed Parquet snapshot is read with its dates typed; a mixed delivery falls back to text."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from landing.delivery import read_delivery
from landing.errors import PartitionError
from landing.partitions import ENROLLMENTS, Partition
from schemas.enrollment import OPTIONAL, REQUIRED

DAY = date(2026, 11, 1)
ROWS = {
    "enrollment_id": ["E1", "E2"],
    "national_id": ["11010519491231002X", "110105194912310021"],
    "member_name": ["张三", "李四"],
    "gender": ["M", "F"],
    "birth_date": [date(1949, 12, 31), date(1950, 1, 2)],
    "plan_code": ["RETIREE_INPATIENT", "WORKER_MUTUAL"],
    "coverage_start": [date(2020, 1, 1), date(2021, 3, 1)],
    "coverage_end": [None, date(2025, 12, 31)],
    "payee_account": ["6222000011112222", "6222000011113333"],
}


def _partition(folder: Path, files: dict[str, pl.DataFrame]) -> Partition:
    folder.mkdir(parents=True)
    entries = []
    for name, frame in files.items():
        path = folder / name
        if name.endswith(".parquet"):
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        entries.append({"name": name, "rows": frame.height, "sha256": sha})
    rows = sum(f.height for f in files.values())
    doc = {"snapshot_date": DAY.isoformat(), "files": entries, "row_count": rows}
    (folder / "_manifest.json").write_text(json.dumps(doc))
    return Partition(ENROLLMENTS, DAY, "", folder)


def test_typed_parquet_dates_stay_dates(tmp_path: Path) -> None:
    p = _partition(tmp_path / "s", {"part-0001.parquet": pl.DataFrame(ROWS)})
    typed = read_delivery(p, REQUIRED, optional=OPTIONAL, keep_dates=True).frame
    text = read_delivery(p, REQUIRED, optional=OPTIONAL).frame
    assert typed.schema["birth_date"] == pl.Date and typed.schema["coverage_end"] == pl.Date
    assert typed.get_column("coverage_end").to_list() == [None, date(2025, 12, 31)]
    # The same values the all-text road reads, once formatted.
    as_text = typed.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%d") for c in ("birth_date", "coverage_start", "coverage_end")
    )
    assert as_text.equals(text)


def test_a_date_typed_in_one_file_and_text_in_another_is_text(tmp_path: Path) -> None:
    typed = pl.DataFrame(ROWS)
    texts = typed.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d")).with_columns(
        enrollment_id=pl.lit("E9") + pl.col("enrollment_id")
    )
    p = _partition(tmp_path / "s", {"part-0001.parquet": typed, "part-0002.csv": texts})
    frame = read_delivery(p, REQUIRED, optional=OPTIONAL, keep_dates=True).frame
    assert frame.schema["birth_date"] == pl.String
    assert frame.get_column("birth_date").to_list()[:3] == [
        "1949-12-31",
        "1950-01-02",
        "1949-12-31",
    ]


def test_a_float_column_still_fails_the_typed_read(tmp_path: Path) -> None:
    rows = pl.DataFrame(ROWS).with_columns(pl.lit(1.5).alias("payee_account"))
    p = _partition(tmp_path / "s", {"part-0001.parquet": rows})
    with pytest.raises(PartitionError, match="payee_account"):
        read_delivery(p, REQUIRED, optional=OPTIONAL, keep_dates=True)


def test_staged_slices_are_written_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slices are written on a thread while the next ones are checked: every file must be there,
    # numbered in slice order, holding its slice's rows.
    import functools

    import pipeline.validate as validate
    from transforms import enrollments

    n = 23
    first = pl.DataFrame(ROWS).head(1)
    frame = pl.concat([first] * n).with_columns(
        enrollment_id=pl.format("E{}", pl.int_range(n, dtype=pl.Int64))
    )
    p = _partition(tmp_path / "s", {"part-0001.parquet": frame})
    monkeypatch.setattr(
        enrollments,
        "validate_in_slices",
        functools.partial(enrollments.validate_in_slices, slice_rows=4),
    )
    v = validate.validate_snapshot(p, work_dir=str(tmp_path / "work"), threshold=0.01)
    assert v.status == "validated", v.error
    assert v.staged_path is not None
    parts = sorted(Path(v.staged_path).glob("part-*.arrow"))
    assert [x.name for x in parts] == [f"part-{i:04d}.arrow" for i in range(6)]
    staged = pl.concat([pl.read_ipc(x) for x in parts])
    assert staged.get_column("enrollment_id").to_list() == [f"E{i}" for i in range(n)]
