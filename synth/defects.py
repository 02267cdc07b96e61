"""Bad rows: the ways a stay is broken, each triggering a quarantine rule of the contract."""

from __future__ import annotations

from datetime import date

import polars as pl

from synth.diagnoses import _MALFORMED_DIAGNOSES
from synth.hospitals import _UNKNOWN_HOSPITAL_PREFIX
from synth.random import _days, _Rng

# The ways a row is made bad when ``bad_rate`` > 0, in the order they are dealt out, and the
# quarantine rule (feeds.md) each one must at least trigger.
DEFECT_RULES: dict[str, str] = {
    "missing_value": "missing_value",
    "unknown_hospital": "unknown_hospital",
    "amount_mismatch": "amount_mismatch",
    "too_many_decimals": "invalid_amount",
    "negative_amount": "invalid_amount",
    "exponent": "invalid_amount",
    "thousands_separator": "invalid_amount",
    "discharge_before_admission": "date_order",
    "admission_before_1990": "date_order",
    "future_discharge": "future_discharge",
    "malformed_diagnosis": "invalid_diagnosis",
    "bad_gender": "invalid_value",
    "impossible_date": "invalid_value",
}
DEFECTS: tuple[str, ...] = tuple(DEFECT_RULES)


def _fmt_fen(fen: pl.Expr, short: pl.Expr | None = None) -> pl.Expr:
    """Yuan text of an amount in fen: ``1234.50``, or with ``short`` ``1234.5`` / ``1200``."""
    cents = fen.abs() % 100
    yuan = (fen.abs() // 100).cast(pl.String)
    two = pl.concat_str(yuan, pl.lit("."), cents.cast(pl.String).str.zfill(2))
    brief = (
        pl.when(cents == 0)
        .then(yuan)
        .when(cents % 10 == 0)
        .then(pl.concat_str(yuan, pl.lit("."), (cents // 10).cast(pl.String)))
        .otherwise(two)
    )
    text = two if short is None else pl.when(short).then(brief).otherwise(two)
    return pl.when(fen < 0).then(pl.concat_str(pl.lit("-"), text)).otherwise(text)


def _apply_defects(frame: pl.DataFrame, *, feed_date: date, seed: int) -> pl.DataFrame:
    """Turn typed stays into contract strings, breaking the rows that carry a ``defect``."""
    rng = _Rng(seed, "defects", feed_date.isoformat())
    j = frame["j"]
    frame = frame.with_columns(
        d_pick=rng.below("pick", j, 1000),
        d_small=rng.below("small", j, 5),
        d_fen=1 + rng.below("fen", j, 999),
    )
    kind = pl.col("defect")

    def is_(name: str) -> pl.Expr:
        return kind.fill_null("") == name

    missing_col = (pl.col("j") // len(DEFECTS)) % 5
    total, fund, in_scope, out = (pl.col(c) for c in ("total", "fund", "in_scope", "out"))
    short = pl.col("short")
    sep_total = pl.when(total < 100_000).then(total + 100_000).otherwise(total)
    sep_yuan = sep_total // 100
    thousands = pl.concat_str(
        pl.when(sep_yuan >= 1_000_000)
        .then(
            pl.concat_str(
                (sep_yuan // 1_000_000).cast(pl.String),
                pl.lit(","),
                ((sep_yuan // 1000) % 1000).cast(pl.String).str.zfill(3),
            )
        )
        .otherwise((sep_yuan // 1000).cast(pl.String)),
        pl.lit(","),
        (sep_yuan % 1000).cast(pl.String).str.zfill(3),
        pl.lit("."),
        (sep_total % 100).cast(pl.String).str.zfill(2),
    )
    fen_text = total.cast(pl.String)
    exponent = pl.concat_str(
        fen_text.str.slice(0, 1),
        pl.lit("."),
        fen_text.str.slice(1),
        pl.lit("e"),
        (fen_text.str.len_chars().cast(pl.Int64) - 3).cast(pl.String),
    )
    year = pl.col("birth_date").dt.year()
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    future = pl.lit(feed_date) + _days(1 + pl.col("d_small"))
    discharge = pl.when(is_("future_discharge")).then(future).otherwise(pl.col("discharge"))
    admission = (
        pl.when(is_("discharge_before_admission"))
        .then(pl.col("discharge") + _days(1 + pl.col("d_small")))
        .when(is_("admission_before_1990"))
        .then(pl.lit(date(1989, 1, 1)) + _days(pl.col("d_pick") % 365))
        .when(is_("future_discharge"))
        .then(future - _days(pl.col("los")))
        .otherwise(pl.col("admission"))
    )

    def blank_if(position: int, value: pl.Expr) -> pl.Expr:
        return (
            pl.when(is_("missing_value") & (missing_col == position))
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(value)
        )

    return frame.with_columns(
        settlement_id=blank_if(2, pl.col("settlement_id")),
        version=pl.col("version").cast(pl.String),
        hospital_code=pl.when(is_("unknown_hospital"))
        .then(
            pl.concat_str(
                pl.lit(_UNKNOWN_HOSPITAL_PREFIX), pl.col("d_pick").cast(pl.String).str.zfill(3)
            )
        )
        .otherwise("hospital_code"),
        patient_name=blank_if(0, pl.col("patient_name")),
        gender=blank_if(
            3,
            pl.when(is_("bad_gender"))
            .then(
                pl.Series(["男", "女", "U", "X", "1"])
                .gather(frame["d_small"])
                .alias("bad_gender_value")
            )
            .otherwise("gender"),
        ),
        birth_date=pl.when(is_("impossible_date"))
        .then(
            pl.concat_str(
                pl.when(leap).then(year + 1).otherwise(year).cast(pl.String), pl.lit("-02-29")
            )
        )
        .otherwise(pl.col("birth_date").cast(pl.String)),
        admission_date=blank_if(1, admission.cast(pl.String)),
        discharge_date=discharge.cast(pl.String),
        primary_diagnosis=pl.when(is_("malformed_diagnosis"))
        .then(
            pl.Series(list(_MALFORMED_DIAGNOSES)).gather(
                frame["d_pick"] % len(_MALFORMED_DIAGNOSES)
            )
        )
        .otherwise("diagnosis"),
        total_cost=pl.when(is_("amount_mismatch"))
        .then(_fmt_fen(total + pl.col("d_fen"), short))
        .when(is_("too_many_decimals"))
        .then(pl.concat_str(_fmt_fen(total), (1 + pl.col("d_small")).cast(pl.String)))
        .when(is_("negative_amount"))
        .then(_fmt_fen(fund - in_scope + out, short))
        .when(is_("exponent"))
        .then(exponent)
        .when(is_("thousands_separator"))
        .then(thousands)
        .otherwise(_fmt_fen(total, short)),
        fund_paid=_fmt_fen(fund, short),
        self_pay_in_scope=pl.when(is_("negative_amount"))
        .then(_fmt_fen(-in_scope, short))
        .otherwise(_fmt_fen(in_scope, short)),
        self_pay_out_of_scope=pl.when(is_("thousands_separator"))
        .then(_fmt_fen(out + sep_total - total, short))
        .otherwise(_fmt_fen(out, short)),
        settled_at=blank_if(
            4, pl.concat_str(pl.col("settled").dt.strftime("%Y-%m-%dT%H:%M:%S"), pl.lit("+08:00"))
        ),
    )
