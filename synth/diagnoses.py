"""Primary diagnoses drawn from the national edition's dictionary, common ones more often."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from synth.contract import DIAGNOSIS_DICTIONARY_PATH
from synth.random import _Rng

# Common reasons for a stay (three-character categories) and rough relative frequencies.
_COMMON_DIAGNOSES: tuple[tuple[str, float], ...] = (
    ("I63", 8), ("J18", 8), ("I25", 6), ("I10", 4), ("J44", 5), ("E11", 5), ("K80", 4),
    ("C34", 4), ("I50", 3), ("K35", 3), ("N20", 3), ("M17", 2), ("S72", 3), ("H25", 4),
    ("C16", 2), ("C22", 2), ("C18", 2), ("C50", 2), ("I21", 2), ("K29", 2), ("J20", 2),
    ("M48", 2), ("N18", 2), ("I48", 2), ("K92", 1), ("S06", 1), ("M51", 2), ("Z51", 3),
    ("K40", 2), ("O80", 1), ("J15", 1),
)  # fmt: skip
_MALFORMED_DIAGNOSES = ("J18-9", "j18.900", "18.900", "J1", "肺炎", "J18.900X001", "I10.x00 x002")


@dataclass(frozen=True)
class _DiagnosisPool:
    """The dictionary, arranged for vectorised drawing."""

    codes: pl.Series
    common_start: list[int]
    common_count: list[int]
    common_weight: list[float]
    unknown: pl.Series


@lru_cache(maxsize=4)
def _diagnosis_pool(path: Path = DIAGNOSIS_DICTIONARY_PATH) -> _DiagnosisPool:
    """Load the dictionary once per process."""
    codes = (
        pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False)["code"]
        .str.strip_chars()
        .unique()
        .sort()
    )
    prefix = codes.str.slice(0, 3)
    starts, counts, weights = [], [], []
    for category, weight in _COMMON_DIAGNOSES:
        hits = (prefix == category).arg_true()
        if len(hits):
            starts.append(int(hits[0]))
            counts.append(len(hits))
            weights.append(weight)
    # Well-formed codes that the dictionary lacks: a real code with an extension it does not have.
    base = codes.filter(codes.str.len_chars() == 7).gather_every(40)
    candidates = (base + "x999").filter(~(base + "x999").is_in(codes.implode()))
    return _DiagnosisPool(codes, starts, counts, weights, candidates)


def _draw_diagnoses(rng: _Rng, index: pl.Series) -> pl.Series:
    """Mostly common diagnoses, some from the whole dictionary, a few well-formed unknown codes."""
    pool = _diagnosis_pool()
    which = rng.pick("dx/category", index, list(range(len(pool.common_start))), pool.common_weight)
    start = pl.Series(pool.common_start).gather(which)
    count = pl.Series(pool.common_count).gather(which)
    common = start + (rng.uniform("dx/common", index) * count).floor().cast(pl.Int64)
    anywhere = rng.below("dx/any", index, len(pool.codes))
    unknown = pool.unknown.gather(rng.below("dx/unknown", index, len(pool.unknown)))
    mode = rng.uniform("dx/mode", index)
    return pl.select(
        pl.when(mode < 0.65)
        .then(pool.codes.gather(common))
        .when(mode < 0.985)
        .then(pool.codes.gather(anywhere))
        .otherwise(unknown)
    ).to_series()
