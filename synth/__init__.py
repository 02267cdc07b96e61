"""Synthetic landing folders: members, hospitals and nightly discharge feeds that look real.

What is written follows the inbound contract (``feeds.md``) to the byte: the hospital registry,
enrolment snapshots and discharge partitions, each data file followed by its ``_manifest.json``.
Three users: ``claims demo`` (:func:`build_demo_landing`: a few hundred people, a handful of
nights, one failing and one unfinished partition), the tests (small precise scenarios from
:func:`make_population`, :func:`make_stays` and the ``write_*`` helpers) and the benchmarks
(10 M enrolments, a year of nightly partitions).

Randomness is a counter-based generator (SplitMix64 over polars ``UInt64`` columns): every value
is a pure function of (seed, scope, stream name, row index). That keeps generation vectorised
without numpy (not a dependency of the project), gives the same rows and bytes on every run, and
lets a later night re-create exactly the earlier stay it corrects or voids without carrying any
state between calls.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import MAX_PREC, Decimal, Inexact, localcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from config.settings import REFERENCE_DIR
from landing import readers
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema
from schemas import reference as reference_schema
from schemas.checks import columns_of
from schemas.notation import DECIMAL_RE, DIAGNOSIS_RE
from schemas.reference import Hospital

# ---------------------------------------------------------------------------------------------
# Contract shapes (feeds.md, benefits.md)
# ---------------------------------------------------------------------------------------------

# The contract's columns, formats and plans come from where they are defined once: the Pandera
# models (schemas) and the registry of readers (landing.readers).
DISCHARGE_COLUMNS: tuple[str, ...] = discharge_schema.COLUMNS
ENROLLMENT_COLUMNS: tuple[str, ...] = enrollment_schema.COLUMNS
REGISTRY_COLUMNS: tuple[str, ...] = columns_of(Hospital)
PLAN_CODES: tuple[str, ...] = reference_schema.PLAN_CODES
FORMATS: tuple[str, ...] = readers.FORMATS
ENCODINGS: tuple[str, ...] = tuple(dict.fromkeys(readers.ENCODINGS.values()))
MANIFEST_NAME = "_manifest.json"
DEFAULT_REGISTRY_PATH = REFERENCE_DIR / "hospitals.csv"
DIAGNOSIS_DICTIONARY_PATH = REFERENCE_DIR / "icd10_chs11_diagnoses.tsv"

# What counts towards a manifest's total_cost_sum (feeds.md), matched against the raw value.
DECIMAL_LITERAL = re.compile(DECIMAL_RE)
# Shape of a diagnosis code of the national edition (feeds.md); every dictionary code matches it.
DIAGNOSIS_PATTERN = re.compile(DIAGNOSIS_RE)

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

# ---------------------------------------------------------------------------------------------
# Counter-based random streams
# ---------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _u64(value: int) -> pl.Series:
    """A one-element UInt64 series: polars broadcasts it and multiplies modulo 2**64."""
    return pl.Series([value & _MASK64], dtype=pl.UInt64)


_GOLDEN = _u64(0x9E3779B97F4A7C15)
_MIX1 = _u64(0xBF58476D1CE4E5B9)
_MIX2 = _u64(0x94D049BB133111EB)
_POW2 = {k: _u64(1 << k) for k in (11, 27, 30, 31, 32)}


def _key(*parts: object) -> int:
    """A stable 64-bit key for a tuple of names (``hash()`` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


class _Rng:
    """Named random streams; a draw depends only on (seed, scope, stream, index)."""

    def __init__(self, seed: int, *scope: object) -> None:
        self._scope = (int(seed), *(str(part) for part in scope))
        self._key = _u64(_key(*self._scope))
        self._cached: tuple[pl.Series, pl.Series] | None = None

    def _base(self, index: pl.Series) -> pl.Series:
        """SplitMix64 of each index under this scope's key; kept for the last index series."""
        # Draws of many streams over the same rows share this full mix, so that each stream
        # only costs one cheap extra round: a third of the work at 10 M rows.
        if self._cached is not None and self._cached[0] is index:
            return self._cached[1]
        z = index.cast(pl.UInt64) * _GOLDEN + self._key
        z = (z ^ (z // _POW2[30])) * _MIX1
        z = (z ^ (z // _POW2[27])) * _MIX2
        z = z ^ (z // _POW2[31])
        self._cached = (index, z)
        return z

    def bits(self, stream: str, index: pl.Series) -> pl.Series:
        """64 well-mixed bits per index for the named stream."""
        z = (self._base(index) ^ _u64(_key(*self._scope, stream))) * _MIX1
        return (z ^ (z // _POW2[32])).alias(stream)

    def uniform(self, stream: str, index: pl.Series) -> pl.Series:
        """Floats in [0, 1) with 53 random bits."""
        return (self.bits(stream, index) // _POW2[11]).cast(pl.Float64) * (2.0**-53)

    def below(self, stream: str, index: pl.Series, n: int) -> pl.Series:
        """Integers in [0, n); the modulo bias is below 2**-40 for the small n used here."""
        return (self.bits(stream, index) % _u64(n)).cast(pl.Int64)

    def normal(self, stream: str, index: pl.Series) -> pl.Series:
        """Standard normal draws (Box-Muller)."""
        u1 = self.uniform(stream + "/r", index)
        u2 = self.uniform(stream + "/a", index)
        return (-2.0 * (1.0 - u1).log()).sqrt() * (2.0 * math.pi * u2).cos()

    def pick_index(
        self, stream: str, index: pl.Series, n: int, weights: Sequence[float] | None = None
    ) -> pl.Series:
        """Positions in [0, n) per index, with the given relative weights."""
        if weights is None:
            return self.below(stream, index, n)
        total = float(sum(weights))
        cumulative, acc = [], 0.0
        for w in weights:
            acc += w / total
            cumulative.append(acc)
        u = self.uniform(stream, index)
        return pl.Series(cumulative).search_sorted(u, side="right").clip(upper_bound=n - 1)

    def pick(
        self,
        stream: str,
        index: pl.Series,
        values: Sequence[Any],
        weights: Sequence[float] | None = None,
        dtype: pl.DataType | type[pl.DataType] | None = None,
    ) -> pl.Series:
        """One of ``values`` per index, with the given relative weights."""
        pool = pl.Series(stream, list(values), dtype=dtype)
        return pool.gather(self.pick_index(stream, index, len(pool), weights)).alias(stream)


def _days(expr: pl.Expr | int) -> pl.Expr:
    """A duration of whole days, for date arithmetic."""
    return pl.duration(days=expr)


# ---------------------------------------------------------------------------------------------
# People and identity numbers
# ---------------------------------------------------------------------------------------------

# Surnames with rough national frequencies (%); Shanghai favourites (陆 顾 沈 钱) are included.
_SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.25), ("李", 7.19), ("张", 6.85), ("刘", 5.38), ("陈", 4.53), ("杨", 3.08),
    ("黄", 2.23), ("赵", 2.14), ("吴", 2.05), ("周", 1.90), ("徐", 1.45), ("孙", 1.38),
    ("马", 1.29), ("朱", 1.28), ("胡", 1.16), ("郭", 1.13), ("何", 1.03), ("高", 1.00),
    ("林", 0.98), ("罗", 0.86), ("郑", 0.78), ("梁", 0.72), ("谢", 0.60), ("宋", 0.55),
    ("唐", 0.54), ("许", 0.52), ("韩", 0.50), ("冯", 0.50), ("邓", 0.50), ("曹", 0.46),
    ("彭", 0.45), ("曾", 0.44), ("肖", 0.43), ("田", 0.40), ("董", 0.40), ("袁", 0.37),
    ("潘", 0.36), ("于", 0.35), ("蒋", 0.35), ("蔡", 0.34), ("余", 0.33), ("杜", 0.32),
    ("叶", 0.32), ("程", 0.31), ("苏", 0.30), ("魏", 0.29), ("吕", 0.29), ("丁", 0.28),
    ("任", 0.27), ("沈", 0.35), ("姚", 0.26), ("卢", 0.26), ("姜", 0.25), ("崔", 0.24),
    ("钟", 0.23), ("谭", 0.23), ("陆", 0.30), ("汪", 0.22), ("范", 0.21), ("金", 0.21),
    ("石", 0.20), ("廖", 0.20), ("贾", 0.19), ("夏", 0.19), ("韦", 0.18), ("付", 0.18),
    ("方", 0.17), ("白", 0.17), ("邹", 0.17), ("孟", 0.16), ("熊", 0.16), ("秦", 0.16),
    ("邱", 0.15), ("江", 0.15), ("尹", 0.14), ("薛", 0.14), ("闫", 0.13), ("段", 0.13),
    ("雷", 0.13), ("侯", 0.12), ("龙", 0.12), ("史", 0.12), ("陶", 0.11), ("黎", 0.11),
    ("贺", 0.11), ("顾", 0.20), ("毛", 0.10), ("郝", 0.10), ("龚", 0.10), ("邵", 0.10),
    ("万", 0.10), ("钱", 0.15), ("严", 0.09), ("戴", 0.09), ("莫", 0.08), ("孔", 0.08),
    ("汤", 0.08), ("欧阳", 0.02), ("司马", 0.005), ("诸葛", 0.003),
)  # fmt: skip
_MALE_CHARS = (
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宁峰建国文俊浩宇晨志海林东兵"
    "龙亮成健坤轩博睿凯毅翔瑞家荣德福生祥庆永新富栋良"
)
_FEMALE_CHARS = (
    "芳娜敏静丽艳娟霞秀英玲燕红萍婷雪琳慧莉颖倩洁梅兰婉佳欣怡雨萱琪晶蕾瑶桂凤珍月丹玉美琴云莹璐"
)

# Area codes (first 6 digits). Several Shanghai codes were abolished (卢湾 310103, 闸北 310108, the
# old counties 3102xx) or created late (崇明区 310151, 2016): genuine numbers carry them anyway.
_AREAS: tuple[tuple[int, float], ...] = (
    (310101, 6), (310103, 2), (310104, 7), (310105, 5), (310106, 6), (310107, 6), (310108, 3),
    (310109, 5), (310110, 7), (310112, 7), (310113, 5), (310114, 4), (310115, 12), (310116, 2),
    (310117, 4), (310118, 2), (310120, 3), (310151, 1), (310225, 1), (310230, 1),
    (320102, 1.5), (320106, 1.5), (320211, 1.5), (320503, 1.5), (330102, 1.5), (330106, 1.5),
    (330203, 1.5), (340104, 1.5), (341221, 1.5), (360102, 1.5), (370102, 1.5), (410105, 1.5),
    (411302, 1.5), (420106, 1.5), (430104, 1.5), (440103, 1.5), (500103, 1.5), (510107, 1.5),
    (610103, 1.5), (230102, 1.5),
)  # fmt: skip
# People who are not enrolled get codes from elsewhere, so they can never collide with a member.
_STRANGER_AREAS: tuple[tuple[int, float], ...] = (
    (530102, 1),
    (520102, 1),
    (640104, 1),
    (650102, 1),
    (150102, 1),
    (460105, 1),
    (630102, 1),
)
_BANK_BINS: tuple[tuple[str, float], ...] = (
    ("622202", 20), ("621700", 15), ("622848", 15), ("621661", 10), ("622262", 8), ("622588", 8),
    ("621483", 5), ("622908", 4), ("623058", 4), ("621226", 6), ("625965", 5),
)  # fmt: skip
_ACCOUNT_LENGTHS: tuple[tuple[int, float], ...] = ((16, 0.15), (17, 0.04), (18, 0.06), (19, 0.75))

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# Segments: retirees, workers, gig workers; their share, age range, skew towards the young end
# (an exponent on the uniform draw), share of men, and plans in the order a person joins them.
_SEGMENT_WEIGHTS = (0.30, 0.55, 0.15)
_SEGMENT_AGES = ((55, 90, 1.4), (20, 60, 1.0), (18, 50, 1.8))
_SEGMENT_MALE = (0.46, 0.55, 0.80)
_SEGMENT_PLANS = (
    ("RETIREE_INPATIENT", "UNION_BASIC"),
    ("WORKER_MUTUAL", "UNION_BASIC", "GIG_WORKER"),
    ("GIG_WORKER", "UNION_BASIC", "WORKER_MUTUAL"),
)


def id_check_char(body: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits of an identity number."""
    total = sum(int(d) * w for d, w in zip(body[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _weighted_digits(number: int, width: int, weights: Sequence[int]) -> int:
    """Sum of the digits of ``number`` (zero-padded to ``width``) times ``weights``."""
    return sum(int(d) * w for d, w in zip(f"{number:0{width}d}", weights, strict=True))


@lru_cache(maxsize=1)
def _check_tables() -> tuple[pl.Series, pl.Series, pl.Series]:
    """Partial check sums for the year, month-day and sequence digits of an identity number."""
    # Summing table look-ups per part is much cheaper than peeling 17 digits off 10 M numbers.
    years = pl.Series([_weighted_digits(y, 4, _ID_WEIGHTS[6:10]) for y in range(10_000)])
    month_days = pl.Series([_weighted_digits(md, 4, _ID_WEIGHTS[10:14]) for md in range(10_000)])
    sequences = pl.Series([_weighted_digits(q, 3, _ID_WEIGHTS[14:17]) for q in range(1000)])
    return years, month_days, sequences


def _national_ids(
    areas: Sequence[int], area_pos: pl.Series, birth: pl.DataFrame, seq: pl.Series
) -> pl.Series:
    """18-character identity numbers from area code, birth date and 3-digit sequence number."""
    years, month_days, sequences = _check_tables()
    area_sums = pl.Series([_weighted_digits(a, 6, _ID_WEIGHTS[:6]) for a in areas])
    total = (
        area_sums.gather(area_pos)
        + years.gather(birth["year"])
        + month_days.gather(birth["md"])
        + sequences.gather(seq)
    )
    area = pl.Series(list(areas), dtype=pl.Int64).gather(area_pos)
    body = (area * 10**11 + birth["year"] * 10**7 + birth["md"] * 1000 + seq).cast(pl.String)
    check = pl.Series(list(_ID_CHECK)).gather(total % 11)
    return pl.DataFrame({"b": body, "c": check}).select(pl.concat_str("b", "c")).to_series()


def _account_numbers(rng: _Rng, stream: str, index: pl.Series) -> pl.Series:
    """Bank card numbers of 16–19 digits: an issuer prefix and random digits."""
    bins = pl.Series([int(b) for b, _ in _BANK_BINS], dtype=pl.Int64)
    prefix = bins.gather(
        rng.pick_index(stream + "/bin", index, len(bins), [w for _, w in _BANK_BINS])
    )
    lengths = [n for n, _ in _ACCOUNT_LENGTHS]
    scale = pl.Series([10 ** (n - 6) for n in lengths], dtype=pl.Int64).gather(
        rng.pick_index(stream + "/len", index, len(lengths), [w for _, w in _ACCOUNT_LENGTHS])
    )
    # At most 19 digits starting with 62: fits in an Int64, so one integer-to-text cast suffices.
    digits = rng.below(stream + "/digits", index, 10**13) % scale
    return (prefix * scale + digits).cast(pl.String)


@lru_cache(maxsize=1)
def _given_names() -> tuple[pl.Series, int, int]:
    """Every one- and two-character given name: men's first, then women's."""

    def names(chars: str) -> list[str]:
        return list(chars) + [a + b for a in chars for b in chars]

    male, female = names(_MALE_CHARS), names(_FEMALE_CHARS)
    return pl.Series(male + female), len(_MALE_CHARS), len(_FEMALE_CHARS)


def _dedupe_codes(rng: _Rng, index: pl.Series, fixed: pl.Series, code: pl.Series) -> pl.Series:
    """Redraw sequence codes (0–499) until every ``fixed + 2 * code`` is unique."""
    # Random codes collide (the birthday problem: ~2 % of 10 M people). The first check looks at
    # everyone; later rounds only at the (area, birth date, gender) groups that had a collision.
    number = fixed + code * 2
    again = (~number.is_first_distinct()).arg_true()
    for attempt in range(64):
        if not len(again):
            return code
        redrawn = rng.below(f"seq/{attempt}", index.gather(again), 500)
        code = code.scatter(again, redrawn)
        number = number.scatter(again, fixed.gather(again) + redrawn * 2)
        groups = number.gather(again) // 1000
        involved = (number // 1000).is_in(groups.unique().implode()).arg_true()
        again = involved.filter(~number.gather(involved).is_first_distinct())
    raise RuntimeError("could not make identity numbers unique")  # pragma: no cover


def _make_people(
    index: pl.Series,
    rng: _Rng,
    *,
    as_of: date,
    areas: Sequence[tuple[int, float]],
    twins: bool,
    dedupe: bool,
) -> pl.DataFrame:
    """People: segment, gender, birth date, Chinese name, valid identity number, payee account."""
    n = len(index)
    given, n_male, n_female = _given_names()
    male_names = n_male + n_male * n_male
    # A given name is one character about a fifth of the time, else two.
    one_char = rng.uniform("given_len", index) < 0.22
    male_given = pl.select(
        pl.when(one_char)
        .then(rng.below("given_m1", index, n_male))
        .otherwise(n_male + rng.below("given_m2", index, n_male * n_male))
    ).to_series()
    female_given = pl.select(
        pl.when(one_char)
        .then(male_names + rng.below("given_f1", index, n_female))
        .otherwise(male_names + n_female + rng.below("given_f2", index, n_female * n_female))
    ).to_series()
    surnames = pl.Series([s for s, _ in _SURNAMES])
    draws = pl.DataFrame(
        [
            index.cast(pl.Int64).alias("pid"),
            rng.pick("segment", index, [0, 1, 2], _SEGMENT_WEIGHTS, dtype=pl.Int64),
            rng.uniform("age", index),
            rng.uniform("gender", index),
            rng.pick_index("surname", index, len(surnames), [w for _, w in _SURNAMES]).alias(
                "surname"
            ),
            male_given.alias("male_given"),
            female_given.alias("female_given"),
        ]
    )

    def by_segment(values: Sequence[float]) -> pl.Expr:
        return (
            pl.when(pl.col("segment") == 0)
            .then(pl.lit(values[0]))
            .when(pl.col("segment") == 1)
            .then(pl.lit(values[1]))
            .otherwise(pl.lit(values[2]))
        )

    lo = by_segment([a[0] for a in _SEGMENT_AGES])
    span = by_segment([a[1] + 1 - a[0] for a in _SEGMENT_AGES])
    skew = by_segment([a[2] for a in _SEGMENT_AGES])
    male = pl.col("gender") < by_segment(_SEGMENT_MALE)
    people = draws.select(
        "pid",
        "segment",
        "surname",
        age=lo + span * pl.col("age").pow(skew),
        male=male,
        given=pl.when(male).then("male_given").otherwise("female_given"),
    ).with_columns(
        birth_date=pl.lit(as_of) - _days((pl.col("age") * 365.2425).cast(pl.Int64)),
    )
    if twins and n >= 1000:
        # Demographic twins: every 1000th person shares name, gender and birth date with the one
        # before, so that matching without an identity number meets a real ambiguity.
        is_twin = (pl.col("pid") % 1000) == 999
        people = people.with_columns(
            [
                pl.when(is_twin).then(pl.col(c).shift(1)).otherwise(pl.col(c)).alias(c)
                for c in ("segment", "surname", "given", "age", "male", "birth_date")
            ]
        )
    birth = people.select(
        year=pl.col("birth_date").dt.year().cast(pl.Int64),
        md=pl.col("birth_date").dt.month().cast(pl.Int64) * 100
        + pl.col("birth_date").dt.day().cast(pl.Int64),
    )
    odd = people["male"].cast(pl.Int64)  # character 17 is odd for men, even for women
    area_codes = [a for a, _ in areas]
    area_pos = rng.pick_index("area", index, len(areas), [w for _, w in areas])
    area = pl.Series(area_codes, dtype=pl.Int64).gather(area_pos)
    # The last three digits: a sequence number whose last digit has the person's parity; 500
    # possible values per (area, birth date, gender).
    code = rng.below("seq", index, 500)
    fixed = area * 10**11 + birth["year"] * 10**7 + birth["md"] * 1000 + odd
    if dedupe:
        code = _dedupe_codes(rng, index, fixed, code)
    seq = (code // 5) * 10 + (code % 5) * 2 + odd
    return people.select(
        "pid",
        "segment",
        "birth_date",
        gender=pl.when("male").then(pl.lit("M")).otherwise(pl.lit("F")),
        member_name=pl.concat_str(
            surnames.gather(people["surname"]), given.gather(people["given"])
        ),
        national_id=_national_ids(area_codes, area_pos, birth, seq),
        payee_account=_account_numbers(rng, "account", index),
        # Hospital stays are far more frequent in old age: weight who gets admitted.
        weight=pl.when(pl.col("age") < 45)
        .then(1.0)
        .when(pl.col("age") < 60)
        .then(2.0)
        .when(pl.col("age") < 75)
        .then(4.0)
        .otherwise(6.0),
    )


# ---------------------------------------------------------------------------------------------
# Population (enrolments)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Hospitals
# ---------------------------------------------------------------------------------------------

_DISTRICTS: dict[int, str] = {
    310101: "黄浦区", 310104: "徐汇区", 310105: "长宁区", 310106: "静安区", 310107: "普陀区",
    310109: "虹口区", 310110: "杨浦区", 310112: "闵行区", 310113: "宝山区", 310114: "嘉定区",
    310115: "浦东新区", 310116: "金山区", 310117: "松江区", 310118: "青浦区", 310120: "奉贤区",
    310151: "崇明区",
}  # fmt: skip
# (district code, name, level). Large teaching hospitals first so that a small n still has them;
# the first 40 (the default registry) include a few community health centres (level 1).
_HOSPITALS: tuple[tuple[int, str, int], ...] = (
    (310101, "上海交通大学医学院附属瑞金医院", 3),
    (310104, "复旦大学附属中山医院", 3),
    (310106, "复旦大学附属华山医院", 3),
    (310115, "上海交通大学医学院附属仁济医院", 3),
    (310104, "上海市第六人民医院", 3),
    (310109, "上海市第一人民医院", 3),
    (310106, "上海市第十人民医院", 3),
    (310101, "上海交通大学医学院附属第九人民医院", 3),
    (310104, "复旦大学附属肿瘤医院", 3),
    (310110, "上海长海医院", 3),
    (310107, "上海市同济医院", 3),
    (310115, "上海市东方医院", 3),
    (310110, "上海交通大学医学院附属新华医院", 3),
    (310109, "上海市第四人民医院", 3),
    (310104, "上海市龙华医院", 3),
    (310115, "复旦大学附属浦东医院", 3),
    (310101, "上海市黄浦区中心医院", 2),
    (310104, "上海市徐汇区中心医院", 2),
    (310104, "上海市徐汇区大华医院", 2),
    (310105, "上海市同仁医院", 2),
    (310105, "上海市长宁区天山中医医院", 2),
    (310106, "上海市静安区中心医院", 2),
    (310106, "上海市静安区市北医院", 2),
    (310107, "上海市普陀区中心医院", 2),
    (310107, "上海市普陀区人民医院", 2),
    (310109, "上海市虹口区江湾医院", 2),
    (310110, "上海市杨浦区中心医院", 2),
    (310110, "上海市杨浦区市东医院", 2),
    (310112, "上海市第五人民医院", 2),
    (310112, "上海市闵行区中心医院", 2),
    (310113, "上海市宝山区中西医结合医院", 2),
    (310113, "上海市宝山区罗店医院", 2),
    (310114, "上海市嘉定区中心医院", 2),
    (310114, "上海市嘉定区南翔医院", 2),
    (310115, "上海市浦东新区人民医院", 2),
    (310115, "上海市浦东新区公利医院", 2),
    (310115, "上海市浦东新区周浦医院", 2),
    (310101, "上海市黄浦区打浦桥街道社区卫生服务中心", 1),
    (310104, "上海市徐汇区枫林街道社区卫生服务中心", 1),
    (310107, "上海市普陀区长征镇社区卫生服务中心", 1),
    (310116, "上海市金山区亭林医院", 2),
    (310117, "上海市松江区泗泾医院", 2),
    (310118, "上海市青浦区中心医院", 2),
    (310120, "上海市奉贤区中心医院", 2),
    (310151, "上海市崇明区第三人民医院", 2),
    (310110, "上海市杨浦区殷行社区卫生服务中心", 1),
    (310112, "上海市闵行区莘庄社区卫生服务中心", 1),
    (310115, "上海市浦东新区花木社区卫生服务中心", 1),
)
# A district code absent from the registry: codes built on it are unknown hospitals.
_UNKNOWN_HOSPITAL_PREFIX = "H310230"


def make_hospitals(n: int = 40, *, seed: int = 0) -> pl.DataFrame:
    """A registry of ``n`` plausible Shanghai hospitals (columns as in feeds.md)."""
    rows: list[tuple[int, str, int]] = list(_HOSPITALS[:n])
    districts = list(_DISTRICTS)
    k = 0
    while len(rows) < n:  # beyond the curated list: community health centres, numbered
        code = districts[k % len(districts)]
        rows.append(
            (code, f"上海市{_DISTRICTS[code]}第{k // len(districts) + 1}社区卫生服务中心", 1)
        )
        k += 1
    seq: dict[int, int] = {}
    codes = []
    for district, _, _ in rows:
        seq[district] = seq.get(district, 0) + 1
        codes.append(f"H{district}{seq[district]:03d}")
    rng = _Rng(seed, "hospitals")
    idx = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    frame = pl.DataFrame(
        {
            "hospital_code": codes,
            "hospital_name": [name for _, name, _ in rows],
            "district": [_DISTRICTS[d] for d, _, _ in rows],
            "level": pl.Series([level for _, _, level in rows], dtype=pl.Int64),
            "from_days": rng.below("from", idx, 3653),
            "to_days": rng.below("to", idx, 548),
            "leaving": rng.uniform("leaving", idx),
        }
    )
    # A couple of smaller hospitals left the network (in_network_to in the past): never the big
    # ones at the head of the list, so that small registries stay simple.
    leaving_rank = frame.with_row_index("i").filter(pl.col("i") >= 16)["leaving"].rank("ordinal")
    leaving = [False] * min(n, 16) + [r <= 2 for r in leaving_rank.to_list()]
    return frame.with_columns(leaving=pl.Series(leaving, dtype=pl.Boolean)).select(
        "hospital_code",
        "hospital_name",
        "district",
        "level",
        in_network_from=pl.lit(date(2015, 1, 1)) + _days(pl.col("from_days")),
        # Left between mid-2024 and the end of 2025, at least a year after joining.
        in_network_to=pl.when("leaving")
        .then(
            pl.max_horizontal(
                pl.lit(date(2024, 7, 1)) + _days(pl.col("to_days")),
                pl.lit(date(2015, 1, 1)) + _days(pl.col("from_days") + 365),
            )
        )
        .otherwise(pl.lit(None, dtype=pl.Date)),
    )


# ---------------------------------------------------------------------------------------------
# Diagnoses
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Discharge stays
# ---------------------------------------------------------------------------------------------

_MAX_LAG = 3  # a correction or void arrives in the same night or up to this many nights later
_FULLWIDTH = dict(zip("0123456789X", "０１２３４５６７８９Ｘ", strict=True))


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


# ---------------------------------------------------------------------------------------------
# Writing: registry, snapshots, partitions, manifests
# ---------------------------------------------------------------------------------------------

_MONEY_COLUMNS = discharge_schema.MONEY
_TYPED_DATES = {"discharges": discharge_schema.DATES, "enrollments": enrollment_schema.DATES}
_EXTENSIONS = tuple(readers.READERS)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a dot-name (ignored by the pipeline), then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _as_strings(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, dates in ISO form."""
    return frame.select([pl.col(c).cast(pl.String) for c in frame.columns])


def _text_bytes(frame: pl.DataFrame, fmt: str, *, encoding: str, bom: bool, crlf: bool) -> bytes:
    """CSV or JSONL text of a frame, encoded as a sender would."""
    buffer = io.BytesIO()
    strings = _as_strings(frame)
    if fmt in ("csv", "csv.gz"):
        strings.write_csv(
            buffer, line_terminator="\r\n" if crlf else "\n", null_value="", quote_style="necessary"
        )
        data = buffer.getvalue()
    else:
        strings.write_ndjson(buffer)
        data = buffer.getvalue()
        if crlf:
            data = data.replace(b"\n", b"\r\n")
    if encoding == "gb18030":
        data = data.decode("utf-8").encode("gb18030")
    if bom:
        data = b"\xef\xbb\xbf" + data
    return data


def _typed_table(frame: pl.DataFrame, kind: str) -> pa.Table:
    """Parquet with real types: version int64, dates date32, money decimal(12,2), timestamps."""
    strings = _as_strings(frame)
    exprs = []
    for column in strings.columns:
        col = pl.col(column)
        if column in _TYPED_DATES[kind]:
            exprs.append(col.str.to_date("%Y-%m-%d", strict=True))
        elif kind == "discharges" and column == "version":
            exprs.append(col.str.strip_chars().cast(pl.Int64, strict=True))
        elif kind == "discharges" and column in _MONEY_COLUMNS:
            exprs.append(col.cast(pl.Decimal(12, 2), strict=True))
        elif kind == "discharges" and column == "settled_at":
            exprs.append(
                col.str.to_datetime(
                    "%Y-%m-%dT%H:%M:%S%z", strict=True, time_unit="us"
                ).dt.convert_time_zone("Asia/Shanghai")
            )
        else:
            exprs.append(col)
    money_ok = [
        (strings[c].is_null() | strings[c].str.contains(r"^-?[0-9]+(\.[0-9]{1,2})?$")).all()
        for c in _MONEY_COLUMNS
        if kind == "discharges" and c in strings.columns
    ]
    if not all(money_ok):
        raise ValueError("typed parquet needs amounts with at most 2 decimals; use typed=False")
    try:
        typed = strings.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"typed parquet needs rows that parse: {type(exc).__name__}") from exc
    table = typed.to_arrow(compat_level=pl.CompatLevel.oldest())
    schema = pa.schema(
        [
            pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
            for f in table.schema
        ]
    )
    return table.cast(schema)


def _file_bytes(
    frame: pl.DataFrame,
    fmt: str,
    *,
    kind: str,
    encoding: str,
    bom: bool,
    crlf: bool,
    typed: bool,
) -> bytes:
    """The bytes of one data file in the given format."""
    if fmt == "parquet":
        if bom or crlf:
            raise ValueError("bom and crlf apply to CSV and JSONL only")
        if typed:
            table = _typed_table(frame, kind)
        else:
            strings = _as_strings(frame).to_arrow(compat_level=pl.CompatLevel.oldest())
            table = strings.cast(pa.schema([pa.field(c, pa.string()) for c in frame.columns]))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()
    if typed:
        raise ValueError("typed=True applies to parquet only")
    data = _text_bytes(frame, fmt, encoding=encoding, bom=bom, crlf=crlf)
    # mtime=0 keeps the gzip header, hence the bytes and the manifest, reproducible.
    return gzip.compress(data, mtime=0) if fmt == "csv.gz" else data


def _check_options(fmt: str, encoding: str, files: int, bom: bool) -> None:
    """Reject options the contract does not know."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if bom and encoding != "utf-8":
        raise ValueError("a BOM is only written for utf-8")
    if files < 1:
        raise ValueError("files must be at least 1")


def _deliver(
    directory: Path,
    frame: pl.DataFrame,
    *,
    kind: str,
    fmt: str,
    encoding: str,
    files: int,
    bom: bool,
    crlf: bool,
    typed: bool,
    manifest: bool,
) -> Path:
    """(Re)deliver a partition: withdraw the manifest, replace the data files, manifest last."""
    _check_options(fmt, encoding, files, bom)
    directory.mkdir(parents=True, exist_ok=True)
    # Withdrawing the manifest first turns the folder back into a delivery in progress, so a
    # pipeline running meanwhile never sees new files under an old manifest.
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    for old in directory.iterdir():
        if old.is_file() and old.name.startswith("part-"):
            old.unlink()
    size, extra = divmod(frame.height, files)
    offset = 0
    for number in range(1, files + 1):
        length = size + (1 if number <= extra else 0)
        data = _file_bytes(
            frame.slice(offset, length),
            fmt,
            kind=kind,
            encoding=encoding,
            bom=bom,
            crlf=crlf,
            typed=typed,
        )
        _write_atomic(directory / f"part-{number:04d}.{fmt}", data)
        offset += length
    if manifest:
        write_manifest(directory, encoding=encoding)
    return directory


def write_registry(landing: Path, hospitals: pl.DataFrame) -> Path:
    """Write ``<landing>/reference/hospitals.csv`` (UTF-8, header, ISO dates)."""
    path = Path(landing) / "reference" / "hospitals.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, registry_csv_bytes(hospitals))
    return path


def registry_csv_bytes(hospitals: pl.DataFrame) -> bytes:
    """The registry as CSV bytes, columns in contract order."""
    return _text_bytes(
        hospitals.select(REGISTRY_COLUMNS), "csv", encoding="utf-8", bom=False, crlf=False
    )


def write_snapshot(
    landing: Path,
    snapshot_date: date,
    enrollments: pl.DataFrame,
    *,
    fmt: str = "csv",
    files: int = 1,
    encoding: str = "utf-8",
    bom: bool = False,
    crlf: bool = False,
    typed: bool = False,
    manifest: bool = True,
) -> Path:
    """Write an enrolment snapshot folder ``enrollments/snapshot_date=D/`` and its manifest."""
    directory = Path(landing) / "enrollments" / f"snapshot_date={snapshot_date.isoformat()}"
    return _deliver(
        directory,
        enrollments,
        kind="enrollments",
        fmt=fmt,
        encoding=encoding,
        files=files,
        bom=bom,
        crlf=crlf,
        typed=typed,
        manifest=manifest,
    )


def write_partition(
    landing: Path,
    feed_date: date,
    source: str,
    rows: pl.DataFrame,
    *,
    fmt: str = "csv",
    encoding: str = "utf-8",
    files: int = 1,
    bom: bool = False,
    crlf: bool = False,
    manifest: bool = True,
    typed: bool = False,
) -> Path:
    """Write a discharge partition ``discharges/feed_date=D/source=S/``; the manifest last."""
    # Only a path-safe name is accepted; names the contract rejects (lower case, too long) are
    # allowed on purpose, so that tests can deliver them.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", source):
        raise ValueError(f"source must be a plain folder name, got {source!r}")
    directory = (
        Path(landing) / "discharges" / f"feed_date={feed_date.isoformat()}" / f"source={source}"
    )
    return _deliver(
        directory,
        rows,
        kind="discharges",
        fmt=fmt,
        encoding=encoding,
        files=files,
        bom=bom,
        crlf=crlf,
        typed=typed,
        manifest=manifest,
    )


def _data_files(directory: Path) -> list[Path]:
    """The partition's data files, in name order, as the manifest lists them."""
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue
        # A file of another format is left out, so a test can leave an unlisted file behind.
        if path.name.endswith(_EXTENSIONS):
            found.append(path)
    return found


def _decode(data: bytes, encoding: str) -> str:
    """Text of a CSV/JSONL file; a wrong declared encoding falls back to a guess."""
    try:
        return data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("gb18030")


def _read_file(path: Path, encoding: str) -> tuple[int, pl.Series | None]:
    """Rows of a data file and its ``total_cost`` values as text (None without that column)."""
    if path.name.endswith(".parquet"):
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        if "total_cost" not in parquet.schema_arrow.names:
            return rows, None
        column = pl.read_parquet(path, columns=["total_cost"])["total_cost"]
        return rows, column.cast(pl.String)
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = _decode(data, encoding)
    if not text.strip():
        return 0, None
    utf8 = io.BytesIO(text.encode("utf-8"))
    if path.name.endswith(".jsonl"):
        frame = pl.read_ndjson(utf8, infer_schema_length=None)
    else:
        frame = pl.read_csv(utf8, infer_schema=False)
    if "total_cost" not in frame.columns:
        return frame.height, None
    return frame.height, frame["total_cost"].cast(pl.String)


def decimal_sum(values: Sequence[str | None] | pl.Series) -> str:
    """Exact sum of the values that are decimal literals, as text with at least 2 decimals."""
    with localcontext() as ctx:
        # Unbounded precision and a trap on rounding: the sum is exact or this raises.
        ctx.prec = MAX_PREC
        ctx.traps[Inexact] = True
        total = Decimal("0.00")
        for value in values:
            if value is not None and DECIMAL_LITERAL.fullmatch(value):
                total += Decimal(value)
        return f"{total:f}"


def write_manifest(partition_dir: Path, **overrides: Any) -> Path:
    """(Re)compute a partition's manifest from the data files present, in name order.

    ``overrides`` replace computed fields (to make a lying manifest); an override of ``None``
    removes the field. ``encoding`` is also used to read CSV and JSONL files; without it the
    previous manifest's encoding is kept (default ``utf-8``). Files of other formats are not
    listed.
    """
    directory = Path(partition_dir)
    path = directory / MANIFEST_NAME
    previous: dict[str, Any] = {}
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
    encoding = overrides.get("encoding") or previous.get("encoding") or "utf-8"

    entries = []
    row_count = 0
    cost_values: list[str | None] = []
    for data_file in _data_files(directory):
        rows, costs = _read_file(data_file, encoding)
        entries.append(
            {
                "name": data_file.name,
                "rows": rows,
                "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
            }
        )
        row_count += rows
        if costs is not None:
            cost_values.extend(costs.to_list())

    manifest: dict[str, Any]
    if directory.name.startswith("snapshot_date="):
        manifest = {"snapshot_date": directory.name.split("=", 1)[1], "encoding": encoding}
        manifest |= {"files": entries, "row_count": row_count}
    elif directory.name.startswith("source=") and directory.parent.name.startswith("feed_date="):
        manifest = {
            "feed_date": directory.parent.name.split("=", 1)[1],
            "source": directory.name.split("=", 1)[1],
            "encoding": encoding,
            "files": entries,
            "row_count": row_count,
            "total_cost_sum": decimal_sum(cost_values),
        }
    else:
        raise ValueError(f"{directory} is neither a discharge partition nor a snapshot folder")
    for key, value in overrides.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    _write_atomic(path, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode())
    return path


# ---------------------------------------------------------------------------------------------
# The demo landing folder
# ---------------------------------------------------------------------------------------------

_DEMO_PEOPLE = 500
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

    About 500 people, a 40-hospital registry, two enrolment snapshots (the second fixes a name
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
