"""The contract shapes the generator writes: taken from the schemas and readers, never restated."""

from __future__ import annotations

import re

from config.settings import REFERENCE_DIR
from landing import readers
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema
from schemas import reference as reference_schema
from schemas.checks import columns_of
from schemas.notation import DECIMAL_RE, DIAGNOSIS_RE
from schemas.reference import Hospital

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
