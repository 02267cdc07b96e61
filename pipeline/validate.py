"""Validate partitions: read, check and stage each one's rows as Parquet for the writer.

Runs anywhere (a thread, a Dask worker): it gets a ``Partition`` and paths, returns a
``Validated`` (small, picklable, no personal data); the rows travel as staged Parquet (a
snapshot's as Arrow files, or held in memory for a commit in this process: ``pipeline.held``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from config.masking import scrub
from landing.delivery import read_delivery
from landing.errors import PartitionError
from landing.partitions import Partition
from pipeline import held
from schemas import discharge_columns as discharge_schema
from schemas.quarantine import empty_quarantine, over_threshold, threshold_error
from transforms.discharges import RawRows, ValidatedRows, validate_discharge_batch

if TYPE_CHECKING:
    import pyarrow as pa

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


def io_failure(partition: Partition, exc: OSError) -> Validated:
    """An I/O error that outlived its retries fails only its partition; the next run retries."""
    return Validated(
        partition, None, "failed", error=f"io_error: {scrub(str(exc))[:300]}", retry=True
    )


def validate_partition(partition: Partition, *, work_dir: str, registry_file: str) -> Validated:
    """Read and validate one discharge partition; frames go to the staging folder.

    A data problem is an outcome (status ``failed``), never an exception: it would fail the
    same way again. An ``OSError`` propagates so that the caller may retry it.
    """
    return _validate_discharge_partitions(
        [partition], work_dir=work_dir, registry_file=registry_file, raise_io=True
    )[0]


def validate_partitions(
    partitions: Sequence[Partition], *, work_dir: str, registry_file: str
) -> list[Validated]:
    """Read and validate several discharge partitions (a night's, a backfill chunk's) at once.

    Each partition is read, checked and failed on its own, as by ``validate_partition``; the
    rows of those that were read are checked in one pass (``validate_discharge_batch``: one
    polars screen, then one call of each model for the suspect rows of all partitions of a
    file format, instead of one per partition), then staged per partition (uncompressed
    Parquet). An I/O error fails only its partition, marked for retry by the next run.
    """
    return _validate_discharge_partitions(
        partitions, work_dir=work_dir, registry_file=registry_file, raise_io=False
    )


def _validate_discharge_partitions(
    partitions: Sequence[Partition], *, work_dir: str, registry_file: str, raise_io: bool
) -> list[Validated]:
    outcomes: dict[int, Validated] = {}
    hashes: dict[int, str] = {}
    read: dict[int, RawRows] = {}
    codes: pl.Series | None = None
    for i, partition in enumerate(partitions):
        content_hash: str | None = None
        try:
            content_hash = partition.content_hash()
            delivery = read_delivery(
                partition, discharge_schema.REQUIRED, optional=discharge_schema.OPTIONAL
            )
            if codes is None:
                codes = pl.read_csv(registry_file, infer_schema=False).get_column("hospital_code")
        except PartitionError as exc:
            outcomes[i] = Validated(partition, content_hash, "failed", error=str(exc))
            continue
        except OSError as exc:
            if raise_io:
                raise  # transient as far as we know: the flow retries it
            outcomes[i] = io_failure(partition, exc)
            continue
        except Exception as exc:
            outcomes[i] = Validated(partition, content_hash, "failed", error=_unexpected(exc))
            continue
        hashes[i] = content_hash
        read[i] = RawRows(delivery.frame, partition.day, partition.source)
    if read and codes is not None:
        for i, rows in zip(read, _validated_rows(list(read.values()), codes), strict=True):
            partition = partitions[i]
            if isinstance(rows, Exception):
                outcomes[i] = Validated(partition, hashes[i], "failed", error=_unexpected(rows))
                continue
            try:
                outcomes[i] = _stage(partition, hashes[i], rows, Path(work_dir))
            except OSError as exc:
                if raise_io:
                    raise
                outcomes[i] = io_failure(partition, exc)
    return [outcomes[i] for i in range(len(partitions))]


def _validated_rows(deliveries: list[RawRows], codes: pl.Series) -> list[ValidatedRows | Exception]:
    """All deliveries in one pass; should that fail unexpectedly, each one alone, so that an
    unexpected error fails only the partition that caused it."""
    try:
        return list(validate_discharge_batch(deliveries, codes))
    except Exception:
        log.warning("checking %d partitions together failed; checking each alone", len(deliveries))
    outcomes: list[ValidatedRows | Exception] = []
    for d in deliveries:
        try:
            outcomes.append(validate_discharge_batch([d], codes)[0])
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _stage(
    partition: Partition, content_hash: str, rows: ValidatedRows, work_dir: Path
) -> Validated:
    out = _partition_dir(work_dir, partition.key)
    out.mkdir(parents=True, exist_ok=True)
    # Uncompressed: the file lives for one run and is read once, from the page cache (a chunk's
    # ~450,000 rows: ~0.4 CPU s to write instead of ~0.9 with zstd, 250 MB instead of 50 on disk
    # until the run's staging folder is removed).
    rows.staged.write_parquet(out / "staged.parquet", compression="uncompressed")
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


def _fingerprinted(staged: pl.DataFrame) -> pa.Table:
    """A staged slice as Arrow with its rows' fingerprints (``storage.members.fingerprints``)."""
    from storage.members import fingerprints  # a snapshot held for this process's load only

    # As ``write_ipc`` writes it: strings as views (``large_string`` cost the inserts ~1 CPU s
    # at 10 M enrolments, ADR 0025).
    return fingerprints(staged.to_arrow(compat_level=pl.CompatLevel.newest()))


def validate_snapshot(
    partition: Partition, *, work_dir: str, threshold: float, hold: bool = False
) -> Validated:
    """Read and validate an enrolment snapshot in slices; over the threshold it fails whole.

    Staged slices are written as ``staged/part-NNNN.arrow`` (Arrow IPC) for the warehouse to load
    in one statement, so memory does not grow with the snapshot beyond its raw text. With
    ``hold`` (the commit runs in this process) they stay in memory as Arrow tables instead
    (``pipeline.held``): nothing is written, mapped or removed (ADR 0028).
    """
    # Here, not at the top: a night without a snapshot does without them. The models (and
    # pandera) come only with a suspect row (``transforms.enrollments._judge``).
    from schemas import enrollment_columns as enrollment_schema
    from transforms import enrollments

    content_hash: str | None = None
    out = _partition_dir(Path(work_dir), partition.key)
    staged_dir = out / "staged"
    staged_dir.mkdir(parents=True, exist_ok=True)
    quarantines: list[pl.DataFrame] = []
    kept: list[Future[pa.Table]] = []
    tables: list[pa.Table] = []
    rows_read = 0
    try:
        content_hash = partition.content_hash()
        delivery = read_delivery(
            partition,
            enrollment_schema.REQUIRED,
            optional=enrollment_schema.OPTIONAL,
            keep_dates=True,  # typed Parquet dates stay dates (no text round trip)
        )
        # Each slice's file is written on a thread of its own while the next slices are checked
        # (polars releases the GIL); a failed write surfaces at its ``result()``.
        with ThreadPoolExecutor(max_workers=1) as writer:
            writes = []
            slices = enrollments.validate_in_slices(delivery.frame, snapshot_date=partition.day)
            for i, part in enumerate(slices):
                if hold:
                    # The frame's own buffers, as Arrow (no copy), with the fingerprints the
                    # load keeps, hashed on the writer's thread while the next slice is
                    # checked (a row's fingerprint is its own: slice by slice is the same).
                    kept.append(writer.submit(_fingerprinted, part.staged))
                else:
                    # Arrow IPC, uncompressed: the file lives for one run and the warehouse maps
                    # it as it is (no Parquet encoding here, no decoding there;
                    # ``storage.members``).
                    writes.append(
                        writer.submit(
                            part.staged.write_ipc,
                            staged_dir / f"part-{i:04d}.arrow",
                            compression="uncompressed",
                        )
                    )
                quarantines.append(part.quarantine)
                rows_read += part.rows_read
            for write in writes:
                write.result()
            tables = [k.result() for k in kept]
        del delivery, kept
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
    if hold and not failed:
        held.hold(staged_dir, tables)
    del tables
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
