"""Diagnosis codes of the national medical-insurance ICD-10 edition (feeds.md, *Diagnosis codes*).

A code shaped wrong is a quarantine reason; a well-formed code missing from the dictionary only
counts as a data-quality warning, because it must never hold back a benefit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import polars as pl

from config.settings import REFERENCE_DIR
from schemas.notation import DIAGNOSIS_RE

DICTIONARY = REFERENCE_DIR / "icd10_chs11_diagnoses.tsv"


@lru_cache(maxsize=2)
def dictionary_codes(path: Path = DICTIONARY) -> pl.Series:
    """The dictionary's codes (33 303 of them), read once per process."""
    frame = pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    return frame.get_column("code").str.strip_chars()


def is_well_formed(code: pl.Expr) -> pl.Expr:
    """Shaped like a code of the edition (after trimming); null or empty is not."""
    return code.str.strip_chars().str.contains(DIAGNOSIS_RE).fill_null(False)


def is_known(code: pl.Expr) -> pl.Expr:
    """Present in the dictionary."""
    return code.str.strip_chars().is_in(dictionary_codes().implode()).fill_null(False)
