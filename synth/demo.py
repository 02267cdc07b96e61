"""The demo landing folder: a few hundred people, a handful of nights, one failing partition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from synth.enrollments import make_population
from synth.files import write_manifest, write_partition, write_registry, write_snapshot
from synth.hospitals import make_hospitals
from synth.people import _account_numbers
from synth.random import _days, _Rng
from synth.review_cases import add_review_cases
from synth.stays import make_stays

# Enough people that two stays of one person in the same nights are rare, as in life, now that
# such overlaps are held for a person.
_DEMO_PEOPLE = 50_000
_DEMO_BAD_RATE = 0.01
_DEMO_MIN_STAYS = 200


@dataclass
class DemoPartition:
    """One discharge partition of the demo, as delivered."""

    key: str
    feed_date: date
    source: str
    path: Path
    fmt: str
    encoding: str
    rows: int
    bad_rows: int
    corrections: int
    voids: int
    ready: bool


@dataclass
class DemoPlan:
    """What :func:`build_demo_landing` wrote, and the one repair the demo makes afterwards."""

    landing: Path
    seed: int
    feed_dates: list[date]
    snapshot_dates: list[date]
    partitions: list[DemoPartition]
    failing_partition: str
    failing_reason: str
    waiting_partition: str
    snapshot_changes: list[str]
    people: int
    enrollments: int
    stays: int
    bad_rows: int
    corrections: int
    voids: int
    fixed: bool = False
    _fix_rows: pl.DataFrame | None = field(default=None, repr=False)
    _fix_options: dict[str, Any] = field(default_factory=dict, repr=False)
    _fix_bad_rows: int = field(default=0, repr=False)

    def partition(self, key: str) -> DemoPartition:
        """The partition with this ``feed_date=D/source=S`` key."""
        return next(p for p in self.partitions if p.key == key)

    def fix_failing_partition(self) -> Path:
        """Re-deliver the failing partition with its rows repaired (new files, new manifest)."""
        if self._fix_rows is None:
            raise RuntimeError("this plan has no failing partition to fix")
        part = self.partition(self.failing_partition)
        path = write_partition(
            self.landing, part.feed_date, part.source, self._fix_rows, **self._fix_options
        )
        part.rows = self._fix_rows.height
        part.bad_rows = self._fix_bad_rows
        self.fixed = True
        return path

    def complete_waiting_partition(self) -> Path:
        """Finish the delivery still in progress: write its manifest."""
        part = self.partition(self.waiting_partition)
        path = write_manifest(part.path, encoding=part.encoding)
        part.ready = True
        return path


def _count_bad(rows: pl.DataFrame) -> int:
    """Rows labelled with a defect."""
    return int(rows["defect"].is_not_null().sum()) if "defect" in rows.columns else 0


def _covered_stays(
    stays: pl.DataFrame, enrollments: pl.DataFrame, hospitals: pl.DataFrame
) -> pl.DataFrame:
    """Good new stays with an exact identity at an in-network hospital, per covering enrolment."""
    in_network = hospitals.filter(pl.col("in_network_to").is_null())["hospital_code"]
    good = stays.filter(
        pl.col("defect").is_null()
        & (pl.col("record_type") == "N")
        & (pl.col("identity") == "exact")
        & (pl.col("name_form") == "exact")
        & pl.col("hospital_code").is_in(in_network.implode())
    ).with_columns(admission=pl.col("admission_date").str.to_date())
    return (
        good.join(enrollments, on="national_id", how="inner")
        .filter(
            (pl.col("coverage_start") + _days(90) <= pl.col("admission"))
            & (pl.col("coverage_end").is_null() | (pl.col("coverage_end") >= pl.col("admission")))
        )
        .sort(["settlement_id", "enrollment_id"])
    )


def build_demo_landing(
    landing: Path, *, seed: int = 7, start: date = date(2026, 11, 20), nights: int = 5
) -> DemoPlan:
    """Write a small realistic landing folder for ``claims demo`` and say what is in it.

    About 50 000 people, a 40-hospital registry, two enrolment snapshots (the second fixes a name
    typo, adds a late enrolment for someone whose stay was unmatched and retro-terminates one
    enrolment), ``nights`` nights of two sources (SHYB: UTF-8 CSV with BOM; HOSPX: Parquet and
    GB18030 CSV in turn) with ~1 % bad rows, corrections and voids; the last HOSPX partition has no
    manifest yet, and one HOSPX partition has too many bad rows to pass.
    """
    if nights < 2:
        raise ValueError("the demo needs at least 2 nights")
    landing = Path(landing)
    as_of = start - timedelta(days=1)
    pop = make_population(_DEMO_PEOPLE, seed=seed, as_of=as_of)
    hospitals = make_hospitals(40, seed=0)
    write_registry(landing, hospitals)
    feed_dates = [start + timedelta(days=i) for i in range(nights)]
    sizes = _Rng(seed, "demo").below("size", pl.int_range(0, nights, eager=True), 201) + 200
    failing_night = min(2, nights - 2)
    second_snapshot = start + timedelta(days=min(3, nights - 1))

    def night_rows(i: int, bad_rate: float) -> dict[str, pl.DataFrame]:
        return make_stays(
            pop,
            hospitals,
            feed_date=feed_dates[i],
            n=int(sizes[i]),
            seed=seed,
            bad_rate=bad_rate,
            history_rows=_DEMO_MIN_STAYS,
            history_start=start,
            labels=True,
        )

    delivered: list[tuple[int, str, pl.DataFrame, dict[str, Any]]] = []
    fix_rows: pl.DataFrame | None = None
    fix_options: dict[str, Any] = {}
    failing_reason = ""
    for i in range(nights):
        night = night_rows(i, _DEMO_BAD_RATE)
        shyb = {"fmt": "csv", "encoding": "utf-8", "bom": True, "crlf": True, "files": 2 - i % 2}
        hospx: dict[str, Any] = (
            {"fmt": "parquet", "encoding": "utf-8"}
            if i % 2 == 0
            else {"fmt": "csv", "encoding": "gb18030"}
        )
        delivered.append((i, "SHYB", night["SHYB"], shyb))
        hospx_rows = night["HOSPX"]
        if i == failing_night:
            # The hospital's extract broke: far more bad rows than the 5 % a partition may have.
            fix_rows, fix_options = hospx_rows, hospx
            for rate in (0.15, 0.25, 0.4, 0.6):
                hospx_rows = night_rows(i, rate)["HOSPX"]
                if _count_bad(hospx_rows) > 0.08 * hospx_rows.height:
                    break
            failing_reason = (
                f"{_count_bad(hospx_rows)} of {hospx_rows.height} rows are bad, above the 5 % "
                "reject threshold"
            )
        if i == nights - 1:
            hospx = {**hospx, "manifest": False}
        delivered.append((i, "HOSPX", hospx_rows, hospx))

    # Snapshot changes, each tied to a stay delivered before the second snapshot.
    before = pl.concat(
        [
            rows
            for i, source, rows, _ in delivered
            if feed_dates[i] < second_snapshot
            and not (source == "HOSPX" and i in (failing_night, nights - 1))
        ]
    )
    enrollments = pop.enrollments
    candidates = _covered_stays(before, enrollments, hospitals)
    counts = enrollments.group_by("national_id").len()
    single = counts.filter(pl.col("len") == 1)["national_id"]
    retro = candidates.filter(pl.col("national_id").is_in(single.implode()))
    if retro.height == 0 or candidates.height < 2:  # pragma: no cover - tiny demos only
        raise RuntimeError("the demo could not find stays for its snapshot changes")
    retro_row = retro.row(0, named=True)
    typo_row = candidates.filter(pl.col("national_id") != retro_row["national_id"]).row(
        0, named=True
    )
    stranger = before.filter(
        (pl.col("identity") == "unknown")
        & pl.col("defect").is_null()
        & (pl.col("record_type") == "N")
        & (pl.col("name_form") == "exact")
        & pl.col("hospital_code").is_in(
            hospitals.filter(pl.col("in_network_to").is_null())["hospital_code"].implode()
        )
    ).sort("settlement_id")
    if stranger.height == 0:  # pragma: no cover - tiny demos only
        raise RuntimeError("the demo has no unmatched stay to enrol")
    stranger_row = stranger.row(0, named=True)

    typo_id = typo_row["national_id"]
    name = typo_row["member_name"]
    misspelt = name[:-1] + ("敏" if name[-1] != "敏" else "民")
    first = enrollments.with_columns(
        member_name=pl.when(pl.col("national_id") == typo_id)
        .then(pl.lit(misspelt))
        .otherwise("member_name")
    )
    typo_ids = first.filter(pl.col("national_id") == typo_id)["enrollment_id"].to_list()
    write_snapshot(landing, as_of, first)

    retro_end = max(retro_row["coverage_start"], retro_row["admission"] - timedelta(days=15))
    next_number = enrollments.height + 1
    admitted = date.fromisoformat(stranger_row["admission_date"])
    new_enrolment = pl.DataFrame(
        {
            "enrollment_id": [f"E{next_number:09d}"],
            "national_id": [stranger_row["national_id"]],
            "member_name": [stranger_row["patient_name"]],
            "gender": [stranger_row["gender"]],
            "birth_date": [date.fromisoformat(stranger_row["birth_date"])],
            "plan_code": ["UNION_BASIC"],
            "coverage_start": [admitted - timedelta(days=180)],
            "coverage_end": [None],
            "payee_account": [_account_numbers(_Rng(seed, "demo"), "late", pl.Series([0])).item()],
        },
        schema=enrollments.schema,
    )
    second = pl.concat(
        [
            enrollments.with_columns(
                coverage_end=pl.when(pl.col("enrollment_id") == retro_row["enrollment_id"])
                .then(pl.lit(retro_end))
                .otherwise("coverage_end")
            ),
            new_enrolment,
        ]
    )
    write_snapshot(landing, second_snapshot, second, fmt="parquet")
    # Described by enrolment ids, hospital codes and settlement ids only: the demo prints these.
    changes = [
        f"fixed the misspelt member name on enrolment(s) {', '.join(typo_ids)}: stay "
        f"{typo_row['hospital_code']}/{typo_row['settlement_id']} goes to review (name mismatch) "
        "under the first snapshot",
        f"added enrolment E{next_number:09d} (UNION_BASIC, backdated) for the patient of "
        f"unmatched stay {stranger_row['hospital_code']}/{stranger_row['settlement_id']}",
        f"retro-terminated enrolment {retro_row['enrollment_id']}, now ending before covered "
        f"stay {retro_row['hospital_code']}/{retro_row['settlement_id']}",
    ]

    # People in the loop: a large mistyped stay (four eyes) and an overlap (synth/review_cases.py)
    exclude = {typo_id, retro_row["national_id"], stranger_row["national_id"]}
    delivered = add_review_cases(delivered, enrollments, hospitals, feed_dates, exclude=exclude)
    partitions = []
    for i, source, rows, options in delivered:
        path = write_partition(
            landing, feed_dates[i], source, rows.drop("defect", "identity", "name_form"), **options
        )
        partitions.append(
            DemoPartition(
                key=f"feed_date={feed_dates[i].isoformat()}/source={source}",
                feed_date=feed_dates[i],
                source=source,
                path=path,
                fmt=options["fmt"],
                encoding=options["encoding"],
                rows=rows.height,
                bad_rows=_count_bad(rows),
                corrections=int((rows["record_type"] == "C").sum()),
                voids=int((rows["record_type"] == "V").sum()),
                ready=options.get("manifest", True),
            )
        )
    assert fix_rows is not None
    return DemoPlan(
        landing=landing,
        seed=seed,
        feed_dates=feed_dates,
        snapshot_dates=[as_of, second_snapshot],
        partitions=partitions,
        failing_partition=f"feed_date={feed_dates[failing_night].isoformat()}/source=HOSPX",
        failing_reason=failing_reason,
        waiting_partition=f"feed_date={feed_dates[-1].isoformat()}/source=HOSPX",
        snapshot_changes=changes,
        people=pop.people.height + 1,
        enrollments=second.height,
        stays=sum(p.rows for p in partitions),
        bad_rows=sum(p.bad_rows for p in partitions),
        corrections=sum(p.corrections for p in partitions),
        voids=sum(p.voids for p in partitions),
        _fix_rows=fix_rows.drop("defect", "identity", "name_form"),
        _fix_options=fix_options,
        _fix_bad_rows=_count_bad(fix_rows),
    )
