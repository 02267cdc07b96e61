"""Validate partitions: read, check and stage each one's rows as Parquet for the writer.

Runs anywhere (a thread, a Dask worker): it gets a ``Partition`` and paths, returns a
``Validated`` (small, picklable, no personal data); the rows travel as staged Parquet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from config.masking import scrub
from landing.delivery import read_delivery
from landing.errors import PartitionError
from landing.partitions import Partition
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema
from schemas.quarantine import empty_quarantine, over_threshold, threshold_error
from transforms.discharges import validate_discharges
from transforms.enrollments import validate_in_slices

log = logging.getLogger("claims")


@dataclass(frozen=True)
class Validated:
    """The outcome of validating one partition, with where its frames are."""

    partition: Partition
    content_hash: str | None
    status: str  # validated | failed
    rows_read: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    warnings: dict[str, int] = field(default_factory=dict)
    staged_path: str | None = None
    quarantine_path: str | None = None
    retry: bool = False  # failed for a reason that is not the data's (an I/O error)

    @property
    def key(self) -> str:
        return self.partition.key


def _unexpected(exc: Exception) -> str:
    """A failure no check foresaw: logged with its type, the message scrubbed, kept short."""
    log.error("unexpected %s while validating a partition", type(exc).__name__)
    return f"unexpected_error: {type(exc).__name__}: {scrub(str(exc))[:300]}"


def _partition_dir(work_dir: Path, key: str) -> Path:
    # Keys are checked against the contract pattern; '=' and '/' become a flat folder name.
    return work_dir / key.replace("/", "__").replace("=", "-")


def validate_partition(partition: Partition, *, work_dir: str, registry_file: str) -> Validated:
    """Read and validate one discharge partition; frames go to the staging folder.

    A data problem is an outcome (status ``failed``), never an exception: it would fail the
    same way again. An ``OSError`` propagates so that the caller may retry it.
    """
    content_hash: str | None = None
    try:
        content_hash = partition.content_hash()
        delivery = read_delivery(
            partition, discharge_schema.REQUIRED, optional=discharge_schema.OPTIONAL
        )
        codes = pl.read_csv(registry_file, infer_schema=False).get_column("hospital_code")
        rows = validate_discharges(
            delivery.frame, feed_date=partition.day, source=partition.source, hospital_codes=codes
        )
    except PartitionError as exc:
        return Validated(partition, content_hash, "failed", error=str(exc))
    except OSError:
        raise  # transient as far as we know: the flow retries it
    except Exception as exc:
        return Validated(partition, content_hash, "failed", error=_unexpected(exc))
    out = _partition_dir(Path(work_dir), partition.key)
    out.mkdir(parents=True, exist_ok=True)
    rows.staged.write_parquet(out / "staged.parquet")
    rows.quarantine.write_parquet(out / "quarantine.parquet")
    return Validated(
        partition,
        content_hash,
        "validated",
        rows_read=rows.rows_read,
        rows_quarantined=rows.rows_quarantined,
        warnings=rows.warnings,
        staged_path=str(out / "staged.parquet"),
        quarantine_path=str(out / "quarantine.parquet"),
    )


def validate_snapshot(partition: Partition, *, work_dir: str, threshold: float) -> Validated:
    """Read and validate an enrolment snapshot in slices; over the threshold it fails whole.

    Staged slices are written as ``staged/part-NNNN.parquet`` for the warehouse to load in one
    statement, so memory does not grow with the snapshot beyond its raw text.
    """
    content_hash: str | None = None
    out = _partition_dir(Path(work_dir), partition.key)
    staged_dir = out / "staged"
    staged_dir.mkdir(parents=True, exist_ok=True)
    quarantines: list[pl.DataFrame] = []
    rows_read = 0
    try:
        content_hash = partition.content_hash()
        delivery = read_delivery(
            partition,
            enrollment_schema.REQUIRED,
            optional=enrollment_schema.OPTIONAL,
            keep_dates=True,  # typed Parquet dates stay dates (no text round trip)
        )
        for i, part in enumerate(validate_in_slices(delivery.frame, snapshot_date=partition.day)):
            # Uncompressed: the file lives for one run and is read once, from the page cache.
            part.staged.write_parquet(
                staged_dir / f"part-{i:04d}.parquet", compression="uncompressed"
            )
            quarantines.append(part.quarantine)
            rows_read += part.rows_read
        del delivery
    except PartitionError as exc:
        return Validated(partition, content_hash, "failed", error=str(exc))
    except OSError:
        raise
    except Exception as exc:
        return Validated(partition, content_hash, "failed", error=_unexpected(exc))
    quarantine = pl.concat(quarantines) if quarantines else empty_quarantine()
    quarantine.write_parquet(out / "quarantine.parquet")
    bad = quarantine.get_column("row_number").n_unique()
    failed = over_threshold(bad, rows_read, threshold)
    return Validated(
        partition,
        content_hash,
        "failed" if failed else "validated",
        rows_read=rows_read,
        rows_quarantined=bad,
        error=threshold_error(bad, rows_read, threshold, "the current enrolment stays")
        if failed
        else None,
        staged_path=None if failed else str(staged_dir),
        quarantine_path=str(out / "quarantine.parquet"),
    )
