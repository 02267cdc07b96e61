"""Synthetic landing folders: members, hospitals and nightly discharge feeds that look real.

What is written follows the inbound contract (``feeds.md``) to the byte: the hospital registry,
enrolment snapshots and discharge partitions, each data file followed by its ``_manifest.json``.
Three users: ``claims demo`` (:func:`build_demo_landing`: a few hundred people, a handful of
nights, one failing and one unfinished partition), the tests (small precise scenarios from
:func:`make_population`, :func:`make_stays` and the ``write_*`` helpers) and the benchmarks
(10 M enrolments, a year of nightly partitions).

One module per thing made, each importing only those before it:

- ``contract``: the columns, formats and plans, taken from ``schemas`` and ``landing.readers``
- ``random``: the counter-based random streams every value is drawn from
- ``people``: names, genders, birth dates, identity numbers, bank accounts
- ``enrollments``: the enrolled population (:func:`make_population`)
- ``hospitals``: the registry (:func:`make_hospitals`)
- ``diagnoses``: primary diagnoses from the national edition's dictionary
- ``defects``: bad rows, one kind per quarantine rule (:data:`DEFECTS`)
- ``stays``: a night's discharges with its corrections and voids (:func:`make_stays`)
- ``files``: landing files and manifests (``write_*``)
- ``demo``: the demo's landing folder (:func:`build_demo_landing`)

Every value is a pure function of (seed, scope, stream name, row index): the same rows and bytes on
every run, and a later night re-creates exactly the earlier stay it corrects or voids.
"""

from __future__ import annotations

from synth.contract import (
    DECIMAL_LITERAL,
    DEFAULT_REGISTRY_PATH,
    DIAGNOSIS_DICTIONARY_PATH,
    DIAGNOSIS_PATTERN,
    DISCHARGE_COLUMNS,
    ENCODINGS,
    ENROLLMENT_COLUMNS,
    FORMATS,
    MANIFEST_NAME,
    PLAN_CODES,
    REGISTRY_COLUMNS,
)
from synth.defects import DEFECT_RULES, DEFECTS
from synth.demo import DemoPartition, DemoPlan, build_demo_landing
from synth.enrollments import Population, make_population
from synth.files import (
    decimal_sum,
    registry_csv_bytes,
    write_manifest,
    write_partition,
    write_registry,
    write_snapshot,
)
from synth.hospitals import make_hospitals
from synth.people import id_check_char
from synth.stays import make_stays

__all__ = [
    "DECIMAL_LITERAL",
    "DEFAULT_REGISTRY_PATH",
    "DEFECTS",
    "DEFECT_RULES",
    "DIAGNOSIS_DICTIONARY_PATH",
    "DIAGNOSIS_PATTERN",
    "DISCHARGE_COLUMNS",
    "ENCODINGS",
    "ENROLLMENT_COLUMNS",
    "FORMATS",
    "MANIFEST_NAME",
    "PLAN_CODES",
    "REGISTRY_COLUMNS",
    "DemoPartition",
    "DemoPlan",
    "Population",
    "build_demo_landing",
    "decimal_sum",
    "id_check_char",
    "make_hospitals",
    "make_population",
    "make_stays",
    "registry_csv_bytes",
    "write_manifest",
    "write_partition",
    "write_registry",
    "write_snapshot",
]
