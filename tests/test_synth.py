"""The synthetic landing generator writes exactly what the inbound contract (feeds.md) describes.

Manifests are checked against files read back independently of the generator (the ``csv`` and
``json`` modules, pyarrow), identity numbers against python-stdnum, amounts in integer fen.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from stdnum.cn import ric

import synth

FEED = date(2026, 11, 22)
AS_OF = date(2026, 11, 19)
MONEY = ("total_cost", "fund_paid", "self_pay_in_scope", "self_pay_out_of_scope")
TWO_DP = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
FULLWIDTH = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")


@pytest.fixture(scope="module")
def pop() -> synth.Population:
    """A population big enough for twins and every identity variant."""
    return synth.make_population(3000, seed=11, as_of=AS_OF)


@pytest.fixture(scope="module")
def hospitals() -> pl.DataFrame:
    """The default registry."""
    return synth.make_hospitals()


@pytest.fixture(scope="module")
def night(pop: synth.Population, hospitals: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """One labelled night with bad rows, corrections and voids."""
    return synth.make_stays(
        pop, hospitals, feed_date=FEED, n=2000, seed=11, bad_rate=0.05, labels=True
    )


def fen(text: str) -> int:
    """Exact fen of a decimal literal with at most 2 decimals."""
    return int(Decimal(text) * 100)


def valid_id(number: str) -> bool:
    """An 18-character identity number with a right check character (python-stdnum)."""
    return (
        len(number) == 18 and number[:17].isdigit() and ric.calc_check_digit(number) == number[-1]
    )


def read_back(path: Path, encoding: str) -> list[dict[str, Any]]:
    """Rows of a data file, read without the generator's code."""
    if path.name.endswith(".parquet"):
        return [
            {k: (None if v is None else str(v)) for k, v in row.items()}
            for row in pq.read_table(path).to_pylist()
        ]
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    if path.name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return [
        {k: (v if v != "" else None) for k, v in row.items()}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]


def check_manifest(directory: Path) -> dict[str, Any]:
    """Assert a manifest matches its files; return it."""
    manifest = json.loads((directory / "_manifest.json").read_text(encoding="utf-8"))
    names = sorted(
        p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
    )
    assert [f["name"] for f in manifest["files"]] == names
    total_rows = 0
    costs: list[str | None] = []
    for entry in manifest["files"]:
        path = directory / entry["name"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        rows = read_back(path, manifest["encoding"])
        assert entry["rows"] == len(rows)
        total_rows += len(rows)
        costs.extend(row.get("total_cost") for row in rows)
    assert manifest["row_count"] == total_rows
    if "feed_date" in manifest:
        literal = re.compile(r"-?[0-9]+(\.[0-9]+)?")
        expected = sum(
            (Decimal(c) for c in costs if c is not None and literal.fullmatch(c)), Decimal(0)
        )
        assert Decimal(manifest["total_cost_sum"]) == expected
    return manifest


# --- manifests and formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "encoding", "bom", "crlf"),
    [
        ("csv", "utf-8", False, False),
        ("csv", "utf-8", True, True),
        ("csv", "gb18030", False, True),
        ("csv.gz", "utf-8", True, False),
        ("csv.gz", "gb18030", False, False),
        ("parquet", "utf-8", False, False),
        ("jsonl", "utf-8", True, False),
        ("jsonl", "gb18030", False, False),
    ],
)
def test_partition_manifest_matches_files(
    tmp_path: Path,
    night: dict[str, pl.DataFrame],
    fmt: str,
    encoding: str,
    bom: bool,
    crlf: bool,
) -> None:
    rows = night["SHYB"].drop("defect", "identity", "name_form")
    directory = synth.write_partition(
        tmp_path, FEED, "SHYB", rows, fmt=fmt, encoding=encoding, files=3, bom=bom, crlf=crlf
    )
    assert directory == tmp_path / "discharges" / "feed_date=2026-11-22" / "source=SHYB"
    manifest = check_manifest(directory)
    assert list(manifest) == [
        "feed_date", "source", "encoding", "files", "row_count", "total_cost_sum",
    ]  # fmt: skip
    assert (manifest["feed_date"], manifest["source"], manifest["encoding"]) == (
        "2026-11-22",
        "SHYB",
        encoding,
    )
    assert [f["name"] for f in manifest["files"]] == [f"part-000{i}.{fmt}" for i in (1, 2, 3)]
    assert manifest["row_count"] == rows.height
    # The sum includes the intentionally bad rows whose total_cost is still a decimal literal.
    assert Decimal(manifest["total_cost_sum"]) == sum(
        Decimal(v)
        for v in rows["total_cost"].drop_nulls()
        if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v)
    )
    # Every value comes back exactly as generated, in order.
    read = [r for f in manifest["files"] for r in read_back(directory / f["name"], encoding)]
    assert read == rows.to_dicts()
    first = (directory / f"part-0001.{fmt}").read_bytes()
    if fmt == "csv":
        assert first.startswith(b"\xef\xbb\xbf") == bom
        assert (b"\r\n" in first) == crlf


def test_typed_parquet(tmp_path: Path, pop: synth.Population, hospitals: pl.DataFrame) -> None:
    rows = synth.make_stays(pop, hospitals, feed_date=FEED, n=300, seed=2)["HOSPX"]
    directory = synth.write_partition(tmp_path, FEED, "HOSPX", rows, fmt="parquet", typed=True)
    schema = pq.read_schema(directory / "part-0001.parquet")
    assert str(schema.field("version").type) == "int64"
    assert str(schema.field("discharge_date").type) == "date32[day]"
    assert str(schema.field("total_cost").type) == "decimal128(12, 2)"
    assert str(schema.field("settled_at").type).startswith("timestamp[us")
    manifest = check_manifest(directory)
    assert Decimal(manifest["total_cost_sum"]) == sum(Decimal(v) for v in rows["total_cost"])
    with pytest.raises(ValueError, match="2 decimals"):
        bad = rows.with_columns(total_cost=pl.lit("1.005"))
        synth.write_partition(tmp_path, FEED, "X1", bad, fmt="parquet", typed=True)


def test_snapshot_manifest(tmp_path: Path, pop: synth.Population) -> None:
    directory = synth.write_snapshot(tmp_path, AS_OF, pop.enrollments, fmt="csv.gz", files=2)
    assert directory == tmp_path / "enrollments" / "snapshot_date=2026-11-19"
    manifest = check_manifest(directory)
    assert list(manifest) == ["snapshot_date", "encoding", "files", "row_count"]
    assert manifest["row_count"] == pop.enrollments.height
    read = [r for f in manifest["files"] for r in read_back(directory / f["name"], "utf-8")]
    assert read[0]["enrollment_id"] == pop.enrollments["enrollment_id"][0]
    expected = pop.enrollments.select(pl.all().cast(pl.String)).to_dicts()
    assert read == expected


def test_manifest_is_written_last_and_withdrawn_first(
    tmp_path: Path, night: dict[str, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = night["HOSPX"].drop("defect", "identity", "name_form")
    directory = synth.write_partition(tmp_path, FEED, "HOSPX", rows, files=2)
    events: list[str] = []
    real_write = synth.files._write_atomic

    def spy(path: Path, data: bytes) -> None:
        events.append(f"{path.name} manifest={(directory / '_manifest.json').exists()}")
        real_write(path, data)

    monkeypatch.setattr(synth.files, "_write_atomic", spy)
    # A re-delivery in another format: the old manifest goes before any new file lands.
    synth.write_partition(tmp_path, FEED, "HOSPX", rows.head(10), fmt="jsonl")
    assert events == ["part-0001.jsonl manifest=False", "_manifest.json manifest=False"]
    assert sorted(p.name for p in directory.iterdir()) == ["_manifest.json", "part-0001.jsonl"]
    assert check_manifest(directory)["row_count"] == 10


def test_partition_without_manifest_and_lying_manifest(
    tmp_path: Path, night: dict[str, pl.DataFrame]
) -> None:
    rows = night["SHYB"].drop("defect", "identity", "name_form")
    directory = synth.write_partition(tmp_path, FEED, "SHYB", rows, manifest=False)
    assert not (directory / "_manifest.json").exists()
    assert (directory / "part-0001.csv").exists()
    synth.write_manifest(directory, row_count=rows.height + 1, total_cost_sum=None)
    manifest = json.loads((directory / "_manifest.json").read_text())
    assert manifest["row_count"] == rows.height + 1
    assert "total_cost_sum" not in manifest
    # Recomputing keeps the encoding of the previous manifest and is honest again; a file of
    # another format stays unlisted, and temporary names are never listed.
    (directory / "notes.txt").write_text("not data")
    (directory / ".part-0002.csv.tmp").write_text("in transfer")
    synth.write_manifest(directory)
    manifest = json.loads((directory / "_manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]] == ["part-0001.csv"]
    assert manifest["row_count"] == rows.height


def test_decimal_sum_is_exact() -> None:
    values = ["0.10"] * 10 + ["0.2", "-0.3", "1e5", "1,234.00", None, "12.345", "7"]
    assert synth.decimal_sum(values) == "20.245"
    assert synth.decimal_sum([]) == "0.00"
    assert synth.decimal_sum(["99999999999999999999.99", "0.01"]) == "100000000000000000000.00"


# --- people and enrolments ------------------------------------------------------------------


def test_identity_numbers_are_valid(pop: synth.Population) -> None:
    people = pop.enrollments.unique("national_id")
    ids = people["national_id"].to_list()
    assert all(valid_id(n) for n in ids)
    assert people.height == pop.people.height  # one national_id per person
    for row in people.iter_rows(named=True):
        assert row["national_id"][6:14] == row["birth_date"].strftime("%Y%m%d")
        assert int(row["national_id"][16]) % 2 == (1 if row["gender"] == "M" else 0)


def test_enrolments(pop: synth.Population) -> None:
    e = pop.enrollments
    assert e.columns == list(synth.ENROLLMENT_COLUMNS)
    assert e.schema["birth_date"] == pl.Date and e.schema["coverage_end"] == pl.Date
    assert e["enrollment_id"].is_unique().all()
    assert set(e["plan_code"]) == set(synth.PLAN_CODES)
    assert 1.25 < e.height / pop.people.height < 1.55
    assert e["coverage_end"].null_count() > 0  # open-ended
    assert (e.filter(pl.col("coverage_end").is_not_null())["coverage_end"] < AS_OF).any()
    assert (e["coverage_end"].drop_nulls() >= e.drop_nulls("coverage_end")["coverage_start"]).all()
    assert e["payee_account"].str.contains(r"^[0-9]{16,19}$").all()
    names = e["member_name"].str.len_chars()
    assert names.min() >= 2 and names.max() <= 4
    # Each person keeps one name, gender and birth date across enrolments.
    per_person = e.group_by("national_id").agg(
        pl.col("member_name", "gender", "birth_date").n_unique()
    )
    assert (per_person.select(pl.exclude("national_id")) == 1).to_series().all()
    ordered = e.sort("national_id", "plan_code", "coverage_start").with_columns(
        prev_end=pl.col("coverage_end").shift(1).over("national_id", "plan_code")
    )
    renewals = ordered.filter(pl.col("coverage_start") == pl.col("prev_end") + timedelta(days=1))
    gaps = ordered.filter(pl.col("coverage_start") > pl.col("prev_end") + timedelta(days=1))
    assert renewals.height > 0 and gaps.height > 0
    people_plans = e.group_by("national_id").agg(pl.col("plan_code").n_unique())["plan_code"]
    assert people_plans.max() >= 2
    ages = e.filter(pl.col("plan_code") == "RETIREE_INPATIENT").select(
        (pl.lit(AS_OF) - pl.col("birth_date")).dt.total_days() / 365.25
    )
    assert ages.to_series().min() >= 54.9
    # Demographic twins: same name, birth date and gender, different identity numbers.
    twins = (
        pop.people.group_by("member_name", "birth_date", "gender")
        .agg(pl.col("national_id").n_unique())
        .filter(pl.col("national_id") > 1)
    )
    assert twins.height >= 3


def test_make_hospitals_and_default_registry(hospitals: pl.DataFrame) -> None:
    assert hospitals.columns == list(synth.REGISTRY_COLUMNS)
    assert hospitals.height == 40 and hospitals["hospital_code"].is_unique().all()
    assert hospitals["hospital_code"].str.contains(r"^H310[0-9]{6}$").all()
    assert set(hospitals["level"]) == {1, 2, 3}
    assert hospitals["in_network_to"].drop_nulls().len() == 2
    assert (hospitals["in_network_to"].drop_nulls() < date(2026, 1, 1)).all()
    left = hospitals.drop_nulls("in_network_to")
    assert (left["in_network_to"] > left["in_network_from"]).all()
    assert synth.make_hospitals(60).height == 60
    shipped = synth.DEFAULT_REGISTRY_PATH.read_bytes()
    assert shipped == synth.registry_csv_bytes(synth.make_hospitals())
    assert shipped.startswith(b"hospital_code,hospital_name,district,level,in_network_from,")


# --- stays ----------------------------------------------------------------------------------


def test_good_rows_follow_the_contract(
    night: dict[str, pl.DataFrame], hospitals: pl.DataFrame
) -> None:
    rows = pl.concat(night.values()).filter(pl.col("defect").is_null())
    registry = set(hospitals["hospital_code"])
    dictionary = set(
        pl.read_csv(
            synth.DIAGNOSIS_DICTIONARY_PATH, separator="\t", quote_char=None, infer_schema=False
        )["code"]
    )
    unknown_dx = 0
    for row in rows.iter_rows(named=True):
        for column in synth.DISCHARGE_COLUMNS:
            assert column == "national_id" or row[column], (column, row)
        assert re.fullmatch(r"[A-Za-z0-9-]{1,32}", row["settlement_id"])
        assert row["hospital_code"] in registry
        assert row["gender"] in ("M", "F")
        admission = date.fromisoformat(row["admission_date"])
        discharge = date.fromisoformat(row["discharge_date"])
        date.fromisoformat(row["birth_date"])
        assert date(1990, 1, 1) <= admission <= discharge <= FEED
        assert synth.DIAGNOSIS_PATTERN.match(row["primary_diagnosis"])
        unknown_dx += row["primary_diagnosis"] not in dictionary
        assert all(TWO_DP.fullmatch(row[c]) for c in MONEY)
        assert fen(row["total_cost"]) == sum(fen(row[c]) for c in MONEY[1:])
        assert datetime.fromisoformat(row["settled_at"]).utcoffset() == timedelta(hours=8)
        assert (row["record_type"], row["version"]) in (("N", "1"), ("C", "2"), ("V", "2"))
    assert 0 < unknown_dx < rows.height * 0.05
    # Formatting sometimes drops trailing zeros, as senders do.
    totals = rows["total_cost"]
    assert (~totals.str.contains(r"\.")).any() and totals.str.contains(r"\.[0-9]$").any()
    assert rows["patient_name"].str.contains(" ").any()


def test_identity_variants(night: dict[str, pl.DataFrame], pop: synth.Population) -> None:
    rows = pl.concat(night.values()).filter(pl.col("defect").is_null())
    known = dict(pop.people.select("national_id", "member_name").iter_rows())
    seen = Counter(rows["identity"])
    assert {"exact", "empty", "malformed", "legacy15", "fullwidth", "spaced", "unknown"} <= set(
        seen
    )
    assert seen["exact"] > 0.7 * rows.height
    for row in rows.iter_rows(named=True):
        shown, form = row["national_id"], row["identity"]
        if form in ("exact", "unknown"):
            assert valid_id(shown)
            assert (shown in known) == (form == "exact")
        elif form in ("empty", "unknown_empty"):
            assert shown is None
        elif form == "malformed":
            assert not valid_id(shown)
        else:
            normal = re.sub(r"\s", "", shown.translate(FULLWIDTH)).upper()
            if form == "legacy15":
                assert len(normal) == 15
                normal = normal[:6] + "19" + normal[6:] + "0"
                normal = normal[:17] + ric.calc_check_digit(normal)
            assert valid_id(normal) and normal in known
        if row["name_form"] in ("spaced", "ideographic_space") and form == "exact":
            assert re.sub(r"\s", "", row["patient_name"]) == known[shown]


def test_every_defect_kind(pop: synth.Population, hospitals: pl.DataFrame) -> None:
    rows = pl.concat(
        synth.make_stays(
            pop, hospitals, feed_date=FEED, n=260, seed=5, bad_rate=1.0, labels=True
        ).values()
    )
    assert Counter(rows["defect"].drop_nulls()) == dict.fromkeys(synth.DEFECTS, 20)
    registry = set(hospitals["hospital_code"])

    def parses(text: str | None) -> bool:
        try:
            date.fromisoformat(text or "")
        except ValueError:
            return False
        return True

    for row in rows.filter(pl.col("defect").is_not_null()).iter_rows(named=True):
        kind = row["defect"]
        money_ok = all(row[c] and TWO_DP.fullmatch(row[c]) for c in MONEY)
        if kind == "missing_value":
            assert any(row[c] is None for c in synth.DISCHARGE_COLUMNS if c != "national_id")
        elif kind == "unknown_hospital":
            assert row["hospital_code"] not in registry
        elif kind == "amount_mismatch":
            assert money_ok
            assert fen(row["total_cost"]) != sum(fen(row[c]) for c in MONEY[1:])
        elif kind == "too_many_decimals":
            assert re.fullmatch(r"[0-9]+\.[0-9]{3}", row["total_cost"])
        elif kind == "negative_amount":
            assert row["self_pay_in_scope"].startswith("-")
        elif kind == "exponent":
            assert re.fullmatch(r"[0-9]\.[0-9]+e[0-9]+", row["total_cost"])
        elif kind == "thousands_separator":
            assert re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})+\.[0-9]{2}", row["total_cost"])
        elif kind == "discharge_before_admission":
            assert row["discharge_date"] < row["admission_date"]
        elif kind == "admission_before_1990":
            assert row["admission_date"] < "1990-01-01"
        elif kind == "future_discharge":
            assert date.fromisoformat(row["discharge_date"]) > FEED
        elif kind == "malformed_diagnosis":
            assert not synth.DIAGNOSIS_PATTERN.match(row["primary_diagnosis"].strip())
        elif kind == "bad_gender":
            assert row["gender"] not in ("M", "F")
        elif kind == "impossible_date":
            assert not parses(row["birth_date"])
        # Each defect breaks one rule where it can: the other rows still add up.
        if kind in ("negative_amount", "thousands_separator"):
            parts = [Decimal(row[c].replace(",", "")) for c in MONEY]
            assert parts[0] == sum(parts[1:])
        elif kind not in ("amount_mismatch", "too_many_decimals", "exponent", "missing_value"):
            assert money_ok and fen(row["total_cost"]) == sum(fen(row[c]) for c in MONEY[1:])


def test_corrections_and_voids_refer_to_earlier_stays(
    pop: synth.Population, hospitals: pl.DataFrame
) -> None:
    start = date(2026, 12, 1)
    nights = [
        pl.concat(
            synth.make_stays(
                pop, hospitals, feed_date=start + timedelta(days=i), n=400, seed=3,
                bad_rate=0.02, history_start=start, labels=True,
            ).values()
        ).with_columns(night=pl.lit(i))
        for i in range(5)
    ]  # fmt: skip
    rows = pl.concat(nights)
    followups = rows.filter(pl.col("record_type") != "N")
    assert set(followups["record_type"]) == {"C", "V"} and (followups["version"] == "2").all()
    originals = rows.filter(pl.col("record_type") == "N")
    joined = followups.join(
        originals, on=["hospital_code", "settlement_id"], how="left", suffix="_n"
    )
    assert joined["night_n"].null_count() == 0
    assert (joined["night_n"] <= joined["night"]).all()
    assert joined["defect_n"].null_count() == joined.height  # never a correction of a bad row
    voids = joined.filter(pl.col("record_type") == "V")
    for column in ("national_id", "patient_name", "admission_date", "total_cost"):
        assert (voids[column] == voids[f"{column}_n"]).all()
    # No stay key and version is delivered twice (that would be a version conflict).
    assert rows.select(
        pl.struct("hospital_code", "settlement_id", "version").is_unique().all()
    ).item()


def test_deterministic(pop: synth.Population, hospitals: pl.DataFrame, tmp_path: Path) -> None:
    again = synth.make_population(3000, seed=11, as_of=AS_OF)
    assert again.enrollments.equals(pop.enrollments)
    assert not synth.make_population(3000, seed=12, as_of=AS_OF).enrollments.equals(pop.enrollments)
    kwargs: dict[str, Any] = {"feed_date": FEED, "n": 500, "seed": 4, "bad_rate": 0.1}
    first = synth.make_stays(pop, hospitals, **kwargs)
    second = synth.make_stays(again, synth.make_hospitals(), **kwargs)
    assert all(first[s].equals(second[s]) for s in first)
    a = synth.write_partition(tmp_path / "a", FEED, "SHYB", first["SHYB"], fmt="csv.gz")
    b = synth.write_partition(tmp_path / "b", FEED, "SHYB", second["SHYB"], fmt="csv.gz")
    assert (a / "_manifest.json").read_bytes() == (b / "_manifest.json").read_bytes()
    # A stay is a function of (seed, night, index): a bigger night starts with the same stays.
    bigger = synth.make_stays(pop, hospitals, **{**kwargs, "n": 800, "correction_rate": 0})
    smaller = synth.make_stays(pop, hospitals, **{**kwargs, "correction_rate": 0})
    new_stays = smaller["SHYB"].filter(pl.col("record_type") == "N")
    same = new_stays.join(bigger["SHYB"], on=new_stays.columns, how="semi", nulls_equal=True)
    assert same.height == new_stays.height


def test_small_and_empty_inputs(hospitals: pl.DataFrame) -> None:
    tiny = synth.make_population(5, seed=1, as_of=AS_OF)
    assert tiny.enrollments.height >= 5
    empty = synth.make_stays(tiny, hospitals, feed_date=FEED, n=0, seed=1)
    assert set(empty) == {"SHYB", "HOSPX"}
    assert all(f.height == 0 and f.columns == list(synth.DISCHARGE_COLUMNS) for f in empty.values())
    one = synth.make_stays(tiny, hospitals, feed_date=FEED, n=50, seed=1, sources=("CITY",))
    assert one["CITY"].height >= 50
    # A hand-made population (text dates, as read from a CSV snapshot) and a text registry.
    by_hand = synth.Population(tiny.enrollments.select(pl.all().cast(pl.String)))
    assert by_hand.people.height == tiny.people.height
    registry = hospitals.select(pl.all().cast(pl.String))
    rows = synth.make_stays(by_hand, registry, feed_date=FEED, n=50, seed=1)
    members = set(tiny.people["national_id"])
    assert sum(n in members for n in rows["SHYB"]["national_id"].drop_nulls()) > 10


# --- demo -----------------------------------------------------------------------------------


def test_demo_landing(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    plan = synth.build_demo_landing(landing)
    assert (landing / "reference" / "hospitals.csv").is_file()
    snapshots = sorted(p.name for p in (landing / "enrollments").iterdir())
    assert snapshots == [f"snapshot_date={d.isoformat()}" for d in plan.snapshot_dates]
    for name in snapshots:
        check_manifest(landing / "enrollments" / name)
    folders = sorted(
        str(p.relative_to(landing / "discharges")) for p in landing.glob("discharges/*/*")
    )
    assert folders == sorted(p.key for p in plan.partitions)
    assert len(folders) == 2 * len(plan.feed_dates) == 10
    waiting = [f for f in folders if not (landing / "discharges" / f / "_manifest.json").exists()]
    assert waiting == [plan.waiting_partition]
    for part in plan.partitions:
        if part.ready:
            manifest = check_manifest(part.path)
            assert manifest["row_count"] == part.rows
    failing = plan.partition(plan.failing_partition)
    assert (
        failing.bad_rows > 0.05 * failing.rows and plan.failing_partition != plan.waiting_partition
    )
    others = [p for p in plan.partitions if p.key != plan.failing_partition]
    assert all(p.bad_rows <= 0.05 * p.rows for p in others)
    per_night = Counter()
    for part in plan.partitions:
        per_night[part.feed_date] += part.rows
    assert all(200 <= rows <= 450 for rows in per_night.values()), per_night
    assert plan.corrections > 0 and plan.voids > 0 and len(plan.snapshot_changes) == 3
    assert {(p.source, p.fmt, p.encoding) for p in plan.partitions} == {
        ("SHYB", "csv", "utf-8"),
        ("HOSPX", "parquet", "utf-8"),
        ("HOSPX", "csv", "gb18030"),
    }
    before = json.loads((failing.path / "_manifest.json").read_text())
    plan.fix_failing_partition()
    after = check_manifest(failing.path)
    assert after["files"][0]["sha256"] != before["files"][0]["sha256"]
    assert after["row_count"] == before["row_count"] and plan.fixed
    assert failing.bad_rows <= 0.05 * failing.rows
    # No personal data in what the demo prints about itself.
    assert not re.search(r"[0-9]{15}|[\u4e00-\u9fff]", " ".join(plan.snapshot_changes))
    plan.complete_waiting_partition()
    check_manifest(plan.partition(plan.waiting_partition).path)


@pytest.mark.slow
def test_a_million_enrolments_quickly() -> None:
    started = time.perf_counter()
    pop = synth.make_population(730_000, seed=1, as_of=AS_OF)
    elapsed = time.perf_counter() - started
    assert pop.enrollments.height >= 1_000_000
    assert pop.enrollments["enrollment_id"].is_unique().all()
    assert pop.people["national_id"].is_unique().all()
    assert elapsed < 15, elapsed
