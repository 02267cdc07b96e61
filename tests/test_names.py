"""transforms.names: the column-wide normal form of names equals the scalar one."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from transforms.names import normalize_name, normalized_name, normalized_names

# Plain names (kept as they are), and every kind of character that NFKC or the white-space rule
# changes: full-width letters, compatibility ideographs, ligatures, ideographic and other spaces.
_CHANGED = ["Ｌ", "ｉ", "\u3000", " ", "\t", "\u2028", "\uf900", "ﬁ", "①", "\x1c"]
_CHARS = st.sampled_from([*"张三王五李·ABCxyz", *_CHANGED])
_NAMES = st.lists(st.none() | st.text(_CHARS, max_size=6), max_size=40)


@given(_NAMES)
def test_normalized_names_equal_the_scalar_normal_form(names: list[str | None]) -> None:
    column = pl.Series("member_name", names, dtype=pl.String)
    out = normalized_names(column)
    assert out.to_list() == [normalize_name(n) for n in names]
    assert (
        out.to_list()
        == column.to_frame().select(normalized_name(pl.col("member_name")))["member_name"].to_list()
    )
    assert column.to_list() == names  # the input column is left as it was


def test_plain_names_are_kept_and_others_normalised() -> None:
    column = pl.Series("n", ["王五", "A·B", "张 三", "ＬＩ　Ｍｉｎｇ", None])
    assert normalized_names(column).to_list() == ["王五", "A·B", "张三", "LIMing", ""]
