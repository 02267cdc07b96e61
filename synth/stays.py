"""Discharge stays of a night: new stays, then the corrections and voids due that night."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from synth.contract import DISCHARGE_COLUMNS
from synth.defects import DEFECTS, _apply_defects
from synth.diagnoses import _draw_diagnoses
from synth.enrollments import Population
from synth.people import _FEMALE_CHARS, _ID_CHECK, _MALE_CHARS, _STRANGER_AREAS, _make_people
from synth.random import _days, _Rng

_MAX_LAG = 3  # a correction or void arrives in the same night or up to this many nights later
_FULLWIDTH = dict(zip("0123456789X", "０１２３４５６７８９Ｘ", strict=True))


def _split_cost(rng: _Rng, prefix: str, index: pl.Series, total: pl.Series) -> pl.DataFrame:
    """Split totals exactly (in fen) into fund, in-scope self-pay and out-of-scope self-pay."""
    fund_share = 0.40 + 0.38 * rng.uniform(prefix + "fund", index)
    u_out = rng.uniform(prefix + "out", index)
    out_share = pl.select(pl.when(u_out < 0.3).then(0.0).otherwise((u_out - 0.3) / 0.7 * 0.15))
    fund = (total.cast(pl.Float64) * fund_share).floor().cast(pl.Int64)
    out = (total.cast(pl.Float64) * out_share.to_series()).floor().cast(pl.Int64)
    return pl.DataFrame({"total": total, "fund": fund, "in_scope": total - fund - out, "out": out})


def _hospital_weights(hospitals: pl.DataFrame) -> tuple[list[str], list[float]]:
    """Registry codes and how often each sends a stay: big and in-network ones far more often."""
    table = hospitals.select(
        pl.col("hospital_code").cast(pl.String),
        level=pl.col("level").cast(pl.String).cast(pl.Int64, strict=False).fill_null(2),
        ended=pl.col("in_network_to").cast(pl.String).fill_null("") != "",
    )
    weights = table.select(
        pl.when(pl.col("level") == 3).then(5.0).when(pl.col("level") == 2).then(2.0).otherwise(0.5)
        * pl.when("ended").then(0.2).otherwise(1.0)
    ).to_series()
    return table["hospital_code"].to_list(), weights.to_list()


def _stays_base(
    pop: Population,
    hospital_codes: list[str],
    hospital_weights: list[float],
    *,
    night: date,
    index: pl.Series,
    seed: int,
    sources: Sequence[str],
    unmatched_rate: float,
) -> pl.DataFrame:
    """New (N, version 1) stays number ``index`` of ``night``: typed, before any defect."""
    rng = _Rng(seed, "stays", night.isoformat())
    n = len(index)
    people = pop.people
    src_weights = (
        [0.6] + [0.4 / (len(sources) - 1)] * (len(sources) - 1) if len(sources) > 1 else [1]
    )

    # Who: a member (older people more often) or, sometimes, someone not enrolled at all.
    strangers = _make_people(
        index,
        _Rng(seed, "strangers", night.isoformat()),
        as_of=night,
        areas=_STRANGER_AREAS,
        twins=False,
        dedupe=False,
    )
    if people.height:
        cumulative = people["weight"].cum_sum()
        target = rng.uniform("person", index) * float(cumulative[-1])
        pos = cumulative.search_sorted(target, side="right").clip(upper_bound=people.height - 1)
        members = people.select("national_id", "member_name", "gender", "birth_date")[pos]
        unknown = rng.uniform("unknown", index) < unmatched_rate
    else:
        members = strangers.select("national_id", "member_name", "gender", "birth_date")
        unknown = pl.Series([True] * n, dtype=pl.Boolean)
    frame = pl.DataFrame(
        {
            "j": index.cast(pl.Int64),
            "src": rng.pick("source", index, list(sources), src_weights),
            "unknown": unknown,
            **{f"m_{c}": members[c] for c in members.columns},
            **{
                f"s_{c}": strangers[c]
                for c in ("national_id", "member_name", "gender", "birth_date")
            },
            "hospital_code": rng.pick("hospital", index, hospital_codes, hospital_weights),
            "diagnosis": _draw_diagnoses(rng, index),
            "u_id": rng.uniform("id_form", index),
            "u_id_variant": rng.below("id_variant", index, 3),
            "u_name": rng.uniform("name_form", index),
            "typo_char": rng.pick("typo", index, list(_MALE_CHARS + _FEMALE_CHARS)),
            "u_offset": rng.uniform("offset", index),
            "z_los": rng.normal("los", index),
            "z_cost": rng.normal("cost", index),
            "u_round": rng.uniform("round", index),
            "u_short": rng.uniform("short", index),
            "settle_next_day": rng.below("settle_day", index, 2),
            "settle_secs": rng.below("settle_secs", index, 14 * 3600),
            "early_secs": rng.below("early_secs", index, 6600),
        }
    )
    person = pl.col("unknown")
    frame = frame.with_columns(
        [
            pl.when(person).then(pl.col(f"s_{c}")).otherwise(pl.col(f"m_{c}")).alias(c)
            for c in ("national_id", "member_name", "gender", "birth_date")
        ]
    )

    # How the identity number arrives: mostly as enrolled, some with formatting noise that
    # normalises away, some empty (matching falls back to name, birth date and gender), some broken.
    nid = pl.col("national_id")
    u = pl.col("u_id")
    legacy_ok = pl.col("birth_date").dt.year() < 2000
    form = (
        pl.when(person & (u < 0.9))
        .then(pl.lit("unknown"))
        .when(person)
        .then(pl.lit("unknown_empty"))
        .when(u < 0.01)
        .then(pl.lit("fullwidth"))
        .when(u < 0.02)
        .then(pl.lit("spaced"))
        .when((u < 0.04) & nid.str.ends_with("X"))
        .then(pl.lit("lower_x"))
        .when((u < 0.06) & legacy_ok)
        .then(pl.lit("legacy15"))
        .when((u >= 0.06) & (u < 0.12))
        .then(pl.lit("empty"))
        .when((u >= 0.12) & (u < 0.14))
        .then(pl.lit("malformed"))
        .otherwise(pl.lit("exact"))
    )
    wrong_check = nid.str.slice(17, 1).replace_strict(
        list(_ID_CHECK), [_ID_CHECK[(i + 1) % 11] for i in range(11)]
    )
    malformed = (
        pl.when(pl.col("u_id_variant") == 0)
        .then(pl.concat_str(nid.str.slice(0, 17), wrong_check))
        .when(pl.col("u_id_variant") == 1)
        .then(nid.str.slice(0, 17))
        .otherwise(pl.concat_str(nid.str.slice(0, 10), pl.lit("A"), nid.str.slice(11)))
    )
    shown_id = (
        pl.when(pl.col("identity").is_in(["empty", "unknown_empty"]))
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("identity") == "fullwidth")
        .then(nid.str.replace_many(list(_FULLWIDTH), list(_FULLWIDTH.values())))
        .when(pl.col("identity") == "spaced")
        .then(
            pl.concat_str(
                nid.str.slice(0, 6), nid.str.slice(6, 8), nid.str.slice(14), separator=" "
            )
        )
        .when(pl.col("identity") == "lower_x")
        .then(nid.str.to_lowercase())
        .when(pl.col("identity") == "legacy15")
        .then(pl.concat_str(nid.str.slice(0, 6), nid.str.slice(8, 9)))
        .when(pl.col("identity") == "malformed")
        .then(malformed)
        .otherwise(nid)
    )
    # The patient's name as the hospital typed it: a space after the surname now and then (it
    # normalises away), and a rare typo that sends the stay to review.
    name = pl.col("member_name")
    v = pl.col("u_name")
    last = name.str.slice(-1)
    typo_char = pl.when(pl.col("typo_char") == last).then(pl.lit("某")).otherwise("typo_char")
    name_form = (
        pl.when(v < 0.03)
        .then(pl.lit("spaced"))
        .when(v < 0.033)
        .then(pl.lit("ideographic_space"))
        .when((v < 0.035) & ~person)
        .then(pl.lit("typo"))
        .otherwise(pl.lit("exact"))
    )
    patient_name = (
        pl.when(pl.col("name_form") == "spaced")
        .then(pl.concat_str(name.str.slice(0, 1), name.str.slice(1), separator=" "))
        .when(pl.col("name_form") == "ideographic_space")
        .then(pl.concat_str(name.str.slice(0, 1), name.str.slice(1), separator="\u3000"))
        .when(pl.col("name_form") == "typo")
        .then(pl.concat_str(name.str.slice(0, name.str.len_chars() - 1), typo_char))
        .otherwise(name)
    )

    # When: discharged mostly 1–10 days before the feed (a few the same day); heavy-tailed stays.
    offset = (
        pl.when(pl.col("u_offset") < 0.03)
        .then(0)
        .otherwise(pl.min_horizontal(10, 1 + (-(1.0 - pl.col("u_offset")).log() * 1.6).floor()))
        .cast(pl.Int64)
    )
    los = ((math.log(6.0) + 0.75 * pl.col("z_los")).exp().round(0)).clip(1, 60).cast(pl.Int64)
    # Cost grows with length of stay; lognormal, a few hundred to several hundred thousand yuan.
    yuan = (
        (math.log(1500.0) + 0.75 * pl.col("los").cast(pl.Float64).log() + 0.8 * pl.col("z_cost"))
        .exp()
        .clip(200.0, 900_000.0)
    )
    fen = (yuan * 100).round(0).cast(pl.Int64)
    total = (
        pl.when(pl.col("u_round") < 0.15)
        .then((pl.col("fen") // 100) * 100)
        .when(pl.col("u_round") < 0.20)
        .then((pl.col("fen") // 10) * 10)
        .otherwise("fen")
    )
    frame = (
        frame.with_columns(identity=form, name_form=name_form, offset=offset, los=los)
        .with_columns(
            shown_id=shown_id,
            patient_name=patient_name,
            discharge=pl.lit(night) - _days(pl.col("offset")),
            fen=fen,
        )
        .with_columns(admission=pl.col("discharge") - _days(pl.col("los")), total=total)
    )
    parts = _split_cost(rng, "split/", index, frame["total"])
    frame = frame.with_columns(
        fund=parts["fund"],
        in_scope=parts["in_scope"],
        out=parts["out"],
        short=pl.col("u_short") < 0.12,
        # Settled on discharge day or the next, at the latest the day before the feed; stays
        # discharged on the feed day itself were settled in the small hours.
        settled=pl.when(pl.col("offset") == 0)
        .then(
            pl.col("discharge").cast(pl.Datetime("us"))
            + pl.duration(seconds=300 + pl.col("early_secs"))
        )
        .otherwise(
            pl.min_horizontal(
                pl.col("discharge") + _days(pl.col("settle_next_day")),
                pl.lit(night - timedelta(days=1)),
            ).cast(pl.Datetime("us"))
            + pl.duration(seconds=8 * 3600 + pl.col("settle_secs"))
        ),
        settlement_id=pl.concat_str(
            pl.lit("ZY" + night.strftime("%Y%m%d") + "-"), pl.col("j").cast(pl.String).str.zfill(7)
        ),
        version=pl.lit(1, dtype=pl.Int64),
        record_type=pl.lit("N"),
    )
    return frame.select(
        "j", "src", "settlement_id", "version", "record_type", "hospital_code",
        pl.col("shown_id").alias("national_id"), "patient_name", "gender", "birth_date",
        "admission", "discharge", "diagnosis", "total", "fund", "in_scope", "out", "short",
        "settled", "los", "identity", "name_form",
    )  # fmt: skip


def _fates(
    seed: int,
    night: date,
    index: pl.Series,
    *,
    bad_rate: float,
    correction_rate: float,
    void_rate: float,
) -> pl.DataFrame:
    """For stays ``index`` of ``night``: whether bad, and whether (and when) corrected or voided."""
    rng = _Rng(seed, "fates", night.isoformat())
    u = rng.uniform("fate", index)
    bad = rng.uniform("bad", index) < bad_rate
    return pl.DataFrame(
        {
            "j": index.cast(pl.Int64),
            "bad": bad,
            # Defects are dealt out in turn so that every kind shows up once there are a dozen.
            "defect": pl.select(
                pl.when(bad).then(pl.Series(DEFECTS).gather(index.cast(pl.Int64) % len(DEFECTS)))
            ).to_series(),
            "fate": pl.select(
                pl.when(bad)
                .then(pl.lit(None, dtype=pl.String))
                .when(u < correction_rate)
                .then(pl.lit("C"))
                .when(u < correction_rate + void_rate)
                .then(pl.lit("V"))
            ).to_series(),
            "lag": rng.below("lag", index, _MAX_LAG + 1),
        }
    )


def _followups(
    pop: Population,
    codes: list[str],
    weights: list[float],
    *,
    feed_date: date,
    n: int,
    seed: int,
    sources: Sequence[str],
    unmatched_rate: float,
    bad_rate: float,
    correction_rate: float,
    void_rate: float,
    history_rows: int,
    history_start: date | None,
) -> pl.DataFrame:
    """Corrections (C, version 2) and voids (V, version 2) due on ``feed_date``."""
    pieces = []
    for lag in range(_MAX_LAG + 1):
        night = feed_date - timedelta(days=lag)
        if history_start is not None and night < history_start:
            break
        rows = n if lag == 0 else history_rows
        index = pl.int_range(0, rows, dtype=pl.Int64, eager=True)
        fates = _fates(
            seed,
            night,
            index,
            bad_rate=bad_rate,
            correction_rate=correction_rate,
            void_rate=void_rate,
        ).filter(pl.col("fate").is_not_null() & (pl.col("lag") == lag))
        if not fates.height:
            continue
        base = _stays_base(
            pop,
            codes,
            weights,
            night=night,
            index=fates["j"],
            seed=seed,
            sources=sources,
            unmatched_rate=unmatched_rate,
        )
        rng = _Rng(seed, "followup", night.isoformat())
        j = fates["j"]
        # A correction re-prices the stay (the bill was revised); a void repeats it as cancelled.
        revised = (
            (base["total"].cast(pl.Float64) * (0.85 + 0.3 * rng.uniform("revise", j)))
            .round(0)
            .cast(pl.Int64)
            .clip(lower_bound=10_000)
        )
        parts = _split_cost(rng, "resplit/", j, revised)
        is_c = fates["fate"] == "C"
        base = base.with_columns(
            record_type=fates["fate"],
            version=pl.lit(2, dtype=pl.Int64),
            total=pl.when(is_c).then(parts["total"]).otherwise("total"),
            fund=pl.when(is_c).then(parts["fund"]).otherwise("fund"),
            in_scope=pl.when(is_c).then(parts["in_scope"]).otherwise("in_scope"),
            out=pl.when(is_c).then(parts["out"]).otherwise("out"),
            # Settled after the original, and no earlier than the day before it is delivered.
            settled=pl.max_horizontal(
                pl.col("settled")
                + pl.duration(seconds=pl.lit(3600 + rng.below("later", j, 3 * 3600))),
                pl.lit(feed_date - timedelta(days=1)).cast(pl.Datetime("us"))
                + pl.duration(seconds=pl.lit(8 * 3600 + rng.below("settle_secs", j, 14 * 3600))),
            ),
        )
        pieces.append(base)
    if not pieces:
        return pl.DataFrame()
    return pl.concat(pieces)


def make_stays(
    pop: Population,
    hospitals: pl.DataFrame,
    *,
    feed_date: date,
    n: int,
    seed: int,
    sources: Sequence[str] = ("SHYB", "HOSPX"),
    bad_rate: float = 0.0,
    unmatched_rate: float = 0.03,
    correction_rate: float = 0.03,
    void_rate: float = 0.005,
    history_rows: int | None = None,
    history_start: date | None = None,
    labels: bool = False,
) -> dict[str, pl.DataFrame]:
    """One night's discharge rows per source: ``n`` new stays plus the corrections and voids due.

    Every value is a string exactly as it would stand in a CSV (an empty value is null). Stay ``j``
    of a night depends only on (seed, night, j) and the population, so a later night can correct
    it: a stay is corrected (``correction_rate``) or voided (``void_rate``) in its own night or up
    to three nights later, with version 2. Earlier nights are assumed to have had ``history_rows``
    stays (default ``n``) and the same rates; nothing refers to nights before ``history_start``.
    A share ``bad_rate`` of the new stays is broken in one of :data:`DEFECTS`. With ``labels``
    three extra columns say what each row is: ``defect`` (null for a good row), ``identity`` (how
    the identity number was presented) and ``name_form``; extra columns are ignored by the contract.
    """
    if not sources:
        raise ValueError("at least one source is needed")
    if hospitals.height == 0:
        raise ValueError("the hospital registry is empty")
    codes, weights = _hospital_weights(hospitals)
    index = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    new = _stays_base(
        pop,
        codes,
        weights,
        night=feed_date,
        index=index,
        seed=seed,
        sources=sources,
        unmatched_rate=unmatched_rate,
    ).with_columns(
        defect=_fates(
            seed,
            feed_date,
            index,
            bad_rate=bad_rate,
            correction_rate=correction_rate,
            void_rate=void_rate,
        )["defect"]
    )
    followups = _followups(
        pop,
        codes,
        weights,
        feed_date=feed_date,
        n=n,
        seed=seed,
        sources=sources,
        unmatched_rate=unmatched_rate,
        bad_rate=bad_rate,
        correction_rate=correction_rate,
        void_rate=void_rate,
        history_rows=n if history_rows is None else history_rows,
        history_start=history_start,
    )
    if followups.height:
        new = pl.concat(
            [new, followups.with_columns(defect=pl.lit(None, dtype=pl.String))], how="vertical"
        )
    rows = (
        _apply_defects(new, feed_date=feed_date, seed=seed)
        # Feeds list settlements in the order they happened.
        .sort(["settled", "settlement_id", "version"], nulls_last=True)
    )
    columns = [*DISCHARGE_COLUMNS, *(("defect", "identity", "name_form") if labels else ())]
    return {
        source: rows.filter(pl.col("src") == source).select(
            [pl.col(c).cast(pl.String) for c in columns]
        )
        for source in sources
    }
