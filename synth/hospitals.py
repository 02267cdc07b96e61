"""The hospital registry: plausible Shanghai hospitals in and out of the network."""

from __future__ import annotations

from datetime import date

import polars as pl

from synth.random import _days, _Rng

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
