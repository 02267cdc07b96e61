"""People: names, genders, birth dates, identity numbers (GB 11643) and bank accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache

import polars as pl

from synth.random import _days, _Rng

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
