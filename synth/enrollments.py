"""The enrolled population: enrolment rows of a snapshot, terms and plans per person."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from synth.people import _AREAS, _SEGMENT_PLANS, _account_numbers, _make_people
from synth.random import _days, _Rng


@dataclass
class Population:
    """The enrolled people, as the enrolment rows of a snapshot (columns as in feeds.md)."""

    enrollments: pl.DataFrame
    as_of: date | None = None
    _people: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def people(self) -> pl.DataFrame:
        """One row per person: national_id, member_name, gender, birth_date, weight (stay odds)."""
        if self._people is None:
            self._people = _people_from_enrollments(self.enrollments, self.as_of)
        return self._people


def _people_from_enrollments(enrollments: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    """People behind hand-made enrolment rows, for populations not built by make_population."""
    # As benefits.md: a person's details come from their enrolment with the latest start.
    latest = (
        enrollments.with_columns(
            [
                pl.col(c).str.to_date("%Y-%m-%d")
                if enrollments.schema[c] == pl.String
                else pl.col(c)
                for c in ("birth_date", "coverage_start")
            ]
        )
        .sort(["coverage_start", "enrollment_id"])
        .unique("national_id", keep="last", maintain_order=True)
    )
    ref = as_of or latest["coverage_start"].max() or date.today()
    age = (pl.lit(ref) - pl.col("birth_date")).dt.total_days() / 365.2425
    return latest.select(
        "national_id",
        "member_name",
        "gender",
        "birth_date",
        weight=pl.when(age < 45)
        .then(1.0)
        .when(age < 60)
        .then(2.0)
        .when(age < 75)
        .then(4.0)
        .otherwise(6.0),
    )


def make_population(n_people: int, *, seed: int, as_of: date) -> Population:
    """Enrolments of ``n_people`` people (about 1.4 each) as known on ``as_of``."""
    rng = _Rng(seed, "population")
    pid = pl.int_range(0, n_people, dtype=pl.Int64, eager=True)
    people = _make_people(pid, rng, as_of=as_of, areas=_AREAS, twins=True, dedupe=True)

    # Plans per person: most join the plan of their segment, some also the union plan or a third.
    # Only integer and date columns are exploded; the person's text columns are gathered once
    # at the end, which keeps 10 M rows fast and small.
    n_plans = rng.pick("n_plans", pid, [1, 2, 3], [0.82, 0.16, 0.02], dtype=pl.Int64)
    chains = (
        people.select("pid", "segment", "birth_date")
        .with_columns(
            n_plans=pl.min_horizontal(n_plans, pl.when(pl.col("segment") == 0).then(2).otherwise(3))
        )
        .with_columns(slot=pl.int_ranges(0, "n_plans", dtype=pl.Int64))
        .explode("slot")
        .with_columns(cid=pl.col("pid") * 4 + pl.col("slot"))
    )
    cid = chains["cid"]
    chains = chains.with_columns(
        plan=chains["segment"] * 3 + chains["slot"],
        n_terms=rng.pick("n_terms", cid, [1, 2, 3], [0.86, 0.12, 0.02], dtype=pl.Int64),
        # 0 open-ended, 1 annual, 2 terminated
        status=rng.pick_index("status", cid, 3, [0.40, 0.50, 0.10]),
        u_start=rng.uniform("start", cid),
        u_end=rng.uniform("end", cid),
        u_gap1=rng.uniform("gap1", cid),
        u_gap2=rng.uniform("gap2", cid),
    )

    def gap(u: str) -> pl.Expr:
        # Most renewals start the day after the previous term ends; a fifth leave a gap.
        return (
            pl.when(pl.col(u) < 0.8)
            .then(0)
            .otherwise(10 + ((pl.col(u) - 0.8) * 950).floor().cast(pl.Int64))
        )

    status = pl.col("status")
    # The latest term: open-ended ones may have started years ago, annual ones within the last
    # year (so they are in force on as_of), terminated ones ended before as_of.
    back = (
        pl.when(status == 0)
        .then((pl.col("u_start") * 1096).floor())
        .when(status == 1)
        .then((pl.col("u_start") * 365).floor())
        .otherwise(60 + (pl.col("u_start") * 671).floor())
        .cast(pl.Int64)
    )
    # 18 years hold at most 5 leap days: 6 575 days after birth is never before the 18th birthday.
    adult = pl.col("birth_date") + _days(6575)
    chains = chains.with_columns(
        adult=adult,
        start0=pl.max_horizontal(pl.lit(as_of) - _days(back), adult),
        back1=365 + gap("u_gap1"),
    ).with_columns(
        end0=pl.when(status == 0)
        .then(pl.lit(None, dtype=pl.Date))
        .when(status == 1)
        .then(pl.col("start0") + _days(364))
        .otherwise(
            pl.max_horizontal(
                pl.col("start0"),
                pl.min_horizontal(
                    pl.col("start0") + _days(30 + (pl.col("u_end") * 300).floor().cast(pl.Int64)),
                    pl.lit(as_of - timedelta(days=1)),
                ),
            )
        ),
        back2=pl.col("back1") + 365 + gap("u_gap2"),
    )
    # Terms of a chain, oldest first: k counts back from the latest term (k = 0).
    terms = (
        chains.select("pid", "cid", "plan", "n_terms", "adult", "start0", "end0", "back1", "back2")
        .with_columns(r=pl.int_ranges(0, "n_terms", dtype=pl.Int64))
        .explode("r")
        .with_columns(k=pl.col("n_terms") - 1 - pl.col("r"))
        .with_columns(
            start=pl.when(pl.col("k") == 0)
            .then(pl.col("start0"))
            .when(pl.col("k") == 1)
            .then(pl.col("start0") - _days(pl.col("back1")))
            .otherwise(pl.col("start0") - _days(pl.col("back2")))
        )
        .with_columns(
            end=pl.when(pl.col("k") == 0).then("end0").otherwise(pl.col("start") + _days(364))
        )
        # Nobody is enrolled before turning 18: drop or trim earlier terms.
        .filter((pl.col("k") == 0) | (pl.col("end") >= pl.col("adult")))
        .with_columns(start=pl.max_horizontal("start", "adult"))
        .select("pid", "cid", "plan", "k", "start", "end")
    )
    person = terms["pid"]
    account = people["payee_account"].gather(person)
    # A few people changed bank since an earlier term; the newest term has the current account.
    tid = terms["cid"] * 4 + terms["k"]
    changed = ((terms["k"] >= 1) & (rng.uniform("account_changed", tid) < 0.04)).arg_true()
    if len(changed):
        account = account.scatter(
            changed, _account_numbers(rng, "old_account", tid.gather(changed))
        )
    plan_table = pl.Series([p for plans in _SEGMENT_PLANS for p in (*plans, *plans)[:3]])
    # E000000001, …: numbering from 10**9 and dropping the leading 1 is cheaper than zfill.
    numbers = pl.int_range(10**9 + 1, 10**9 + 1 + terms.height, dtype=pl.Int64, eager=True)
    enrollments = pl.DataFrame(
        {
            "enrollment_id": pl.select(
                pl.concat_str(pl.lit("E"), numbers.cast(pl.String).str.slice(1))
            ).to_series(),
            "national_id": people["national_id"].gather(person),
            "member_name": people["member_name"].gather(person),
            "gender": people["gender"].gather(person),
            "birth_date": people["birth_date"].gather(person),
            "plan_code": plan_table.gather(terms["plan"]),
            "coverage_start": terms["start"],
            "coverage_end": terms["end"],
            "payee_account": account,
        }
    )
    return Population(
        enrollments=enrollments,
        as_of=as_of,
        _people=people.select("national_id", "member_name", "gender", "birth_date", "weight"),
    )
