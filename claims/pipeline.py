"""The stages of a run, as plain functions: plan → validate → commit → issue → report.

Flows (``flows/``) call these in order and add names, retries and concurrency; tests call them
directly. Stages pass small references (keys, paths, ids), never frames: validation writes its
frames to the staging folder and the single warehouse writer reads them from there.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from claims.config import ConfigError, Settings
from claims.faults import fault_point
from claims.pii import scrub
from landing.delivery import read_delivery
from landing.errors import PartitionError
from landing.partitions import DISCHARGES, ENROLLMENTS, Partition, discover
from schemas import discharge as discharge_schema
from schemas import enrollment as enrollment_schema
from schemas.quarantine import empty_quarantine, over_threshold, threshold_error
from storage import batches as batch_store
from storage import members as member_store
from storage import runs, staging
from storage.adjudication import adjudicate
from storage.ledger import post
from storage.reference import replace_reference, stored_hash, stored_registry
from storage.warehouse import Connection, open_warehouse, transaction
from transforms.discharges import validate_discharges
from transforms.enrollments import validate_in_slices
from transforms.reference import Reference, ReferenceError, load_registry, load_rules, registry_path

log = logging.getLogger("claims")


@dataclass(frozen=True)
class PartitionRef:
    """A partition to process: enough to find it again, nothing more."""

    kind: str
    key: str
    day: date
    source: str
    path: str

    @classmethod
    def of(cls, p: Partition) -> PartitionRef:
        return cls(p.kind, p.key, p.day, p.source, str(p.path))

    def partition(self) -> Partition:
        return Partition(self.kind, self.day, self.source, Path(self.path))


@dataclass(frozen=True)
class RunPlan:
    """What one commit will do; decided up front, under the run lock."""

    run_id: str
    command: str
    as_of: date
    started_at: datetime
    work_dir: str  # this run's staging folder
    discharges: list[PartitionRef]
    snapshot: PartitionRef | None
    registry_file: str  # the registry this run validates and adjudicates with
    registry_changed: bool
    registry_error: str | None
    rules_changed: bool
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    ready_snapshots: list[tuple[str, date]] = field(default_factory=list)


@dataclass(frozen=True)
class Validated:
    """The outcome of validating one partition, with where its frames are."""

    kind: str
    key: str
    day: date
    source: str
    content_hash: str | None
    status: str  # validated | failed
    rows_read: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    warnings: dict[str, int] = field(default_factory=dict)
    staged_path: str | None = None
    quarantine_path: str | None = None
    retry: bool = False  # failed for a reason that is not the data's (an I/O error)


@dataclass
class CommitResult:
    """What a commit did: the figures of the run report (no personal data)."""

    run_id: str
    command: str
    as_of: str
    partitions: dict[str, list[str]] = field(default_factory=dict)  # status → keys
    rows_read: int = 0
    rows_quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # key → reason
    snapshot: str | None = None
    snapshot_rows: int | None = None
    full_recompute: bool = False
    stays_by_status: dict[str, int] = field(default_factory=dict)
    paid_by_plan: dict[str, int] = field(default_factory=dict)
    recovered_by_plan: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    paid_fen: int = 0
    recovered_fen: int = 0
    batch_id: str | None = None
    batch_instructions: int = 0
    batch_fen: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.partitions.get("failed"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True, default=str)


def new_run_id(started: datetime) -> str:
    return f"{started:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


def _rules(settings: Settings) -> Reference:
    try:
        return load_rules(settings.reference_dir / "plans.toml")
    except ReferenceError as exc:
        # A bad rules file stops the run before anything is posted.
        raise ConfigError(f"plan rules: {exc}") from None


def plan_run(
    settings: Settings,
    *,
    command: str,
    as_of: date,
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
    feed_dates: tuple[date, date] | None = None,
    run_id: str | None = None,
) -> RunPlan:
    """Decide what this run processes, recover what a killed run left, record waiting folders.

    Must be called holding the run lock. Bad usage (an unknown partition to re-run, a broken
    rules file) stops here before anything is written.
    """
    started = datetime.now(UTC)
    run_id = run_id or new_run_id(started)
    rules = _rules(settings)
    found = discover(settings.landing)
    _check_rerun_keys(found.discharges, rerun_keys)
    _remove_stale_staging(settings.staging_dir)
    work_dir = settings.staging_dir / run_id
    work_dir.mkdir(parents=True, exist_ok=True)

    with open_warehouse(settings.warehouse) as con:
        reissued = issue_pending_batches(settings, con)
        with transaction(con):
            staging.reset_interrupted(con, run_id)
        states = staging.partition_states(con)
        refs = _prepare_references(con, settings, rules, work_dir)
        chosen, skipped, waiting = _choose_discharges(
            found.discharges,
            states,
            as_of=as_of,
            feed_dates=feed_dates,
            rerun_keys=rerun_keys,
            rerun_failed=rerun_failed,
        )
        snapshot = _choose_snapshot(con, found.snapshots, states, force=rerun_keys is not None)
        with transaction(con):
            for p in waiting + [s for s in found.snapshots if not s.is_ready]:
                staging.record_waiting(
                    con, kind=p.kind, key=p.key, day=p.day, source=p.source, run_id=run_id
                )
            for p in skipped:
                staging.record_skipped(
                    con, kind=DISCHARGES, key=p.key, content_hash=p.content_hash(), run_id=run_id
                )
            for ref in [*chosen, *([snapshot] if snapshot else [])]:
                staging.mark_running(
                    con, kind=ref.kind, key=ref.key, day=ref.day, source=ref.source, run_id=run_id
                )
    return RunPlan(
        run_id=run_id,
        command=command,
        as_of=as_of,
        started_at=started,
        work_dir=str(work_dir),
        discharges=chosen,
        snapshot=snapshot,
        registry_file=refs.registry_file,
        registry_changed=refs.registry_changed,
        registry_error=refs.registry_error,
        rules_changed=refs.rules_changed,
        skipped=[p.key for p in skipped],
        waiting=[w.key for w in waiting],
        ignored=[scrub(i) for i in found.ignored],
        reissued=reissued,
        ready_snapshots=[(p.key, p.day) for p in found.snapshots if p.is_ready],
    )


def _remove_stale_staging(staging_dir: Path) -> None:
    """Staging folders of killed runs hold personal data and are never read again: remove them.

    Called under the run lock, so no other run is using one.
    """
    if staging_dir.is_dir():
        for folder in staging_dir.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def _check_rerun_keys(discharges: list[Partition], rerun_keys: list[str] | None) -> None:
    """Every partition named for a re-run must be in the landing folder, with its manifest."""
    by_key = {p.key: p for p in discharges}
    for key in rerun_keys or []:
        if key not in by_key:
            raise ConfigError(f"no partition {key} in the landing folder")
        if not by_key[key].is_ready:
            raise ConfigError(f"partition {key} has no _manifest.json yet: it is still arriving")


@dataclass(frozen=True)
class _References:
    registry_file: str
    registry_changed: bool
    registry_error: str | None
    rules_changed: bool


def _prepare_references(
    con: Connection, settings: Settings, rules: Reference, work_dir: Path
) -> _References:
    """The registry and rules this run uses, written to its staging folder for the tasks.

    A broken landing registry keeps the one in the warehouse (the project default on a new
    warehouse); the reason goes to the report.
    """
    registry_error = None
    try:
        registry: Reference | None = load_registry(
            registry_path(settings.landing, settings.reference_dir)
        )
    except ReferenceError as exc:
        registry, registry_error = None, scrub(str(exc))
    registry_file = work_dir / "hospitals.csv"
    registry_changed = False
    in_use = stored_registry(con) if registry is None else None
    if in_use is not None:
        in_use.write_csv(registry_file)
    else:
        if registry is None:
            registry = load_registry(settings.reference_dir / "hospitals.csv")
        registry.frame.write_csv(registry_file)
        registry_changed = stored_hash(con, "hospitals") != registry.content_hash
        if registry_changed:
            _stage_reference(work_dir, "hospitals", registry)
    rules_changed = stored_hash(con, "plans") != rules.content_hash
    if rules_changed:
        _stage_reference(work_dir, "plans", rules)
    return _References(str(registry_file), registry_changed, registry_error, rules_changed)


def _stage_reference(work_dir: Path, name: str, ref: Reference) -> None:
    ref.frame.write_parquet(work_dir / f"{name}.parquet")
    (work_dir / f"{name}.origin").write_text(
        json.dumps({"origin": ref.origin, "hash": ref.content_hash})
    )


def _choose_discharges(
    discharges: list[Partition],
    states: dict[tuple[str, str], tuple[Any, ...]],
    *,
    as_of: date,
    feed_dates: tuple[date, date] | None,
    rerun_keys: list[str] | None,
    rerun_failed: bool,
) -> tuple[list[PartitionRef], list[Partition], list[Partition]]:
    """(to process, skipped as done with this content, waiting for a manifest)."""
    chosen: list[PartitionRef] = []
    skipped: list[Partition] = []
    waiting: list[Partition] = []
    wanted = set(rerun_keys or [])
    for p in discharges:
        if feed_dates and not feed_dates[0] <= p.day <= feed_dates[1]:
            continue
        if not feed_dates and p.day > as_of:
            continue
        if rerun_keys is not None and p.key not in wanted:
            continue
        if not p.is_ready:
            waiting.append(p)
            continue
        status, content, applied, retry = states.get((DISCHARGES, p.key), (None,) * 4)
        if rerun_keys is not None or (rerun_failed and status == "failed"):
            chosen.append(PartitionRef.of(p))
        elif rerun_failed:
            continue
        elif p.content_hash() == applied:
            # The content in use (delivered again after a failed delivery, or unchanged).
            skipped.append(p)
        elif status == "failed" and p.content_hash() == content and not retry:
            continue  # the same bad content fails the same way until it changes
        else:
            chosen.append(PartitionRef.of(p))
    return chosen, skipped, waiting


def _choose_snapshot(
    con: Connection, snapshots: list[Partition], states: dict, *, force: bool
) -> PartitionRef | None:
    """The newest ready snapshot, if it is newer than (or a new delivery of) the current one."""
    ready = [s for s in snapshots if s.is_ready]
    if not ready:
        return None
    newest = ready[-1]
    current = member_store.current_snapshot(con)
    content = newest.content_hash()
    if current is not None:
        current_day, current_hash = current
        if newest.day < current_day or (newest.day == current_day and content == current_hash):
            return None
    status, last_content, _applied, retry = states.get((ENROLLMENTS, newest.key), (None,) * 4)
    if status == "failed" and last_content == content and not retry and not force:
        return None
    return PartitionRef.of(newest)


def _unexpected(exc: Exception) -> str:
    """A failure no check foresaw: logged with its type, the message scrubbed, kept short."""
    log.error("unexpected %s while validating a partition", type(exc).__name__)
    return f"unexpected_error: {type(exc).__name__}: {scrub(str(exc))[:300]}"


def _partition_dir(work_dir: Path, key: str) -> Path:
    # Keys are checked against the contract pattern; '=' and '/' become a flat folder name.
    return work_dir / key.replace("/", "__").replace("=", "-")


def validate_partition(ref: PartitionRef, *, work_dir: str, registry_file: str) -> Validated:
    """Read and validate one discharge partition; frames go to the staging folder.

    A data problem is an outcome (status ``failed``), never an exception: it would fail the
    same way again. An ``OSError`` propagates so that the caller may retry it.
    """
    partition = ref.partition()
    content_hash: str | None = None
    try:
        content_hash = partition.content_hash()
        delivery = read_delivery(
            partition, discharge_schema.REQUIRED, optional=discharge_schema.OPTIONAL
        )
        codes = pl.read_csv(registry_file, infer_schema=False).get_column("hospital_code")
        rows = validate_discharges(
            delivery.frame, feed_date=ref.day, source=ref.source, hospital_codes=codes
        )
    except PartitionError as exc:
        return Validated(
            ref.kind, ref.key, ref.day, ref.source, content_hash, "failed", error=str(exc)
        )
    except OSError:
        raise  # transient as far as we know: the flow retries it
    except Exception as exc:
        return Validated(
            ref.kind, ref.key, ref.day, ref.source, content_hash, "failed", error=_unexpected(exc)
        )
    out = _partition_dir(Path(work_dir), ref.key)
    out.mkdir(parents=True, exist_ok=True)
    rows.staged.write_parquet(out / "staged.parquet")
    rows.quarantine.write_parquet(out / "quarantine.parquet")
    return Validated(
        ref.kind,
        ref.key,
        ref.day,
        ref.source,
        content_hash,
        "validated",
        rows_read=rows.rows_read,
        rows_quarantined=rows.rows_quarantined,
        warnings=rows.warnings,
        staged_path=str(out / "staged.parquet"),
        quarantine_path=str(out / "quarantine.parquet"),
    )


def validate_snapshot(ref: PartitionRef, *, work_dir: str, threshold: float) -> Validated:
    """Read and validate an enrolment snapshot in slices; over the threshold it fails whole.

    Staged slices are written as ``staged/part-NNNN.parquet`` for the warehouse to load in one
    statement, so memory does not grow with the snapshot beyond its raw text.
    """
    partition = ref.partition()
    content_hash: str | None = None
    out = _partition_dir(Path(work_dir), ref.key)
    staged_dir = out / "staged"
    staged_dir.mkdir(parents=True, exist_ok=True)
    quarantines: list[pl.DataFrame] = []
    rows_read = 0
    try:
        content_hash = partition.content_hash()
        delivery = read_delivery(
            partition, enrollment_schema.REQUIRED, optional=enrollment_schema.OPTIONAL
        )
        for i, part in enumerate(validate_in_slices(delivery.frame, snapshot_date=ref.day)):
            # lz4: the file lives for one run; zstd would cost twice the CPU for nothing.
            part.staged.write_parquet(staged_dir / f"part-{i:04d}.parquet", compression="lz4")
            quarantines.append(part.quarantine)
            rows_read += part.rows_read
        del delivery
    except PartitionError as exc:
        return Validated(ref.kind, ref.key, ref.day, "", content_hash, "failed", error=str(exc))
    except OSError:
        raise
    except Exception as exc:
        return Validated(
            ref.kind, ref.key, ref.day, "", content_hash, "failed", error=_unexpected(exc)
        )
    quarantine = pl.concat(quarantines) if quarantines else empty_quarantine()
    quarantine.write_parquet(out / "quarantine.parquet")
    bad = quarantine.get_column("row_number").n_unique()
    failed = over_threshold(bad, rows_read, threshold)
    return Validated(
        ref.kind,
        ref.key,
        ref.day,
        "",
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


def _read_quarantine(path: str | None) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path else None


def commit(settings: Settings, plan: RunPlan, validated: list[Validated]) -> CommitResult:
    """The single writer: stage, adjudicate, post and pay in one transaction.

    A crash before the end leaves no trace of this run's money; partitions it marked
    ``running`` are reset by the next run.
    """
    fault_point("after_validation")
    result = CommitResult(plan.run_id, plan.command, plan.as_of.isoformat())
    result.partitions["skipped"] = list(plan.skipped)
    result.partitions["waiting"] = list(plan.waiting)
    if plan.ignored:
        result.notes.append(
            f"{len(plan.ignored)} folder(s) ignored: their names do not follow the contract "
            f"({', '.join(plan.ignored[:5])})"
        )
    if plan.reissued:
        result.notes.append(
            f"issued batch(es) {', '.join(plan.reissued)} committed by a run that stopped "
            "before writing them"
        )
    if plan.registry_error:
        result.notes.append(
            f"registry not updated: {plan.registry_error}; the previous registry is in use"
        )
    work = Path(plan.work_dir)
    at = datetime.now(UTC)
    with open_warehouse(settings.warehouse) as con, transaction(con):
        staging.begin_commit(con)
        full = False
        if plan.rules_changed:
            origin = json.loads((work / "plans.origin").read_text())
            replace_reference(
                con,
                "plans",
                "plan_rules",
                pl.read_parquet(work / "plans.parquet"),
                origin=origin["origin"],
                content_hash=origin["hash"],
            )
            full = True
        if plan.registry_changed:
            origin = json.loads((work / "hospitals.origin").read_text())
            replace_reference(
                con,
                "hospitals",
                "hospitals",
                pl.read_parquet(work / "hospitals.parquet"),
                origin=origin["origin"],
                content_hash=origin["hash"],
            )
            full = True
        for v in validated:
            if v.kind == ENROLLMENTS:
                full |= _commit_snapshot(con, plan, v, result)
        for v in sorted(
            (v for v in validated if v.kind == DISCHARGES), key=lambda v: (v.day, v.source)
        ):
            _commit_discharges(con, settings, plan, v, result)
        staging.mark_superseded(con, ready=plan.ready_snapshots, run_id=plan.run_id)
        staging.refresh_touched_stays(con)
        fault_point("after_staging")
        result.full_recompute = full or not runs.has_outcomes(con)
        adjudicate(con, full=result.full_recompute)
        posted = post(con, run_id=plan.run_id, batch_id=f"B{plan.run_id}", at=at)
        fault_point("in_ledger")
        result.entries = posted.entries
        result.paid_fen = posted.paid_fen
        result.recovered_fen = posted.recovered_fen
        result.batch_id = posted.batch_id
        result.batch_instructions = posted.instructions
        result.batch_fen = posted.batch_fen
        result.paid_by_plan, result.recovered_by_plan = runs.money_by_plan(con, plan.run_id)
        result.stays_by_status = runs.stays_by_status(con)
        runs.record_run(
            con,
            run_id=plan.run_id,
            command=plan.command,
            as_of=plan.as_of,
            started_at=plan.started_at,
            batch_id=result.batch_id,
            summary_json=result.to_json(),
        )
    fault_point("after_commit")
    return result


def _commit_snapshot(con: Connection, plan: RunPlan, v: Validated, result: CommitResult) -> bool:
    """Load a validated snapshot, or record why not. Returns whether enrolment changed."""
    quarantine = _read_quarantine(v.quarantine_path)
    if v.status == "failed" or v.staged_path is None:
        staging.record_failure(
            con,
            kind=ENROLLMENTS,
            key=v.key,
            day=v.day,
            source="",
            run_id=plan.run_id,
            content_hash=v.content_hash,
            error=v.error or "failed",
            rows_read=v.rows_read,
            quarantine=quarantine,
            retry=v.retry,
        )
        result.partitions.setdefault("failed", []).append(v.key)
        result.errors[v.key] = v.error or "failed"
        return False
    fault_point("snapshot_load")
    rows = member_store.load_snapshot(
        con,
        staged_parquet=Path(v.staged_path),
        snapshot_date=v.day,
        content_hash=v.content_hash or "",
        run_id=plan.run_id,
    )
    staging.record_success(
        con,
        kind=ENROLLMENTS,
        key=v.key,
        day=v.day,
        source="",
        run_id=plan.run_id,
        content_hash=v.content_hash or "",
        rows_read=v.rows_read,
        quarantine=quarantine if quarantine is not None else empty_quarantine(),
        warnings={},
    )
    result.partitions.setdefault("succeeded", []).append(v.key)
    result.snapshot, result.snapshot_rows = v.key, rows
    result.rows_quarantined += v.rows_quarantined
    return True


def _commit_discharges(
    con: Connection, settings: Settings, plan: RunPlan, v: Validated, result: CommitResult
) -> None:
    quarantine = _read_quarantine(v.quarantine_path)
    if v.status == "failed" or v.staged_path is None or v.content_hash is None:
        staged = staging.record_failure(
            con,
            kind=DISCHARGES,
            key=v.key,
            day=v.day,
            source=v.source,
            run_id=plan.run_id,
            content_hash=v.content_hash,
            error=v.error or "failed",
            rows_read=v.rows_read,
            quarantine=quarantine,
            retry=v.retry,
        )
    else:
        staged = staging.stage_discharges(
            con,
            key=v.key,
            day=v.day,
            source=v.source,
            run_id=plan.run_id,
            content_hash=v.content_hash,
            staged=pl.read_parquet(v.staged_path),
            quarantine=quarantine if quarantine is not None else empty_quarantine(),
            rows_read=v.rows_read,
            warnings=v.warnings,
            threshold=settings.reject_threshold,
        )
    result.partitions.setdefault(staged.status, []).append(v.key)
    result.rows_read += staged.rows_read
    result.rows_quarantined += staged.rows_quarantined
    if staged.error:
        result.errors[v.key] = staged.error
    if quarantine is not None and quarantine.height:
        for rule, n in quarantine.group_by("rule").len().rows():
            result.quarantined_by_rule[rule] = result.quarantined_by_rule.get(rule, 0) + n
    for name, n in v.warnings.items():
        result.warnings[name] = result.warnings.get(name, 0) + n


def issue_pending_batches(settings: Settings, con: Connection) -> list[str]:
    """Write every committed batch not yet issued (the next run does this first)."""
    from outbox.payments import write_batch

    issued = []
    for batch_id in batch_store.unissued_batches(con):
        rows = batch_store.batch_instructions(con, batch_id)
        write_batch(settings.outbox, batch_id, rows, fault=fault_point)
        fault_point("after_batch_file")
        batch_store.mark_issued(con, batch_id)
        issued.append(batch_id)
    return issued


def issue(settings: Settings) -> list[str]:
    """Write the batches the last commit left unissued."""
    with open_warehouse(settings.warehouse) as con:
        return issue_pending_batches(settings, con)


def feed_dates_between(settings: Settings, first: date, last: date) -> list[date]:
    """The feed dates in [first, last] that have partition folders, in order."""
    found = discover(settings.landing)
    return sorted({p.day for p in found.discharges if first <= p.day <= last})


def cleanup(plan: RunPlan) -> None:
    """The staging folder of a committed run is not needed any more."""
    shutil.rmtree(plan.work_dir, ignore_errors=True)


def run_local(
    settings: Settings,
    *,
    command: str = "run",
    as_of: date,
    rerun_keys: list[str] | None = None,
    rerun_failed: bool = False,
    feed_dates: tuple[date, date] | None = None,
) -> CommitResult:
    """One whole commit without Prefect, in this thread: what the flows do, minus orchestration.

    For tests, benchmarks and debugging; the flows add task names, retries and concurrency.
    """
    from storage.lock import run_lock

    with run_lock(settings.warehouse, settings.lock_timeout_s):
        plan = plan_run(
            settings,
            command=command,
            as_of=as_of,
            rerun_keys=rerun_keys,
            rerun_failed=rerun_failed,
            feed_dates=feed_dates,
        )
        validated = [
            validate_partition(ref, work_dir=plan.work_dir, registry_file=plan.registry_file)
            for ref in plan.discharges
        ]
        if plan.snapshot is not None:
            validated.append(
                validate_snapshot(
                    plan.snapshot,
                    work_dir=plan.work_dir,
                    threshold=settings.snapshot_reject_threshold,
                )
            )
        result = commit(settings, plan, validated)
        issue(settings)
        cleanup(plan)
        return result
