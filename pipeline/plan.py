"""Plan a run: what it processes, what it skips, what a killed run left behind.

Called under the run lock, before anything else is written; bad usage stops here.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from config.masking import scrub
from config.settings import ConfigError, Settings
from landing.partitions import DISCHARGES, ENROLLMENTS, Partition, discover
from pipeline import held
from pipeline.audit import refuse_if_behind
from pipeline.pay import issue_pending_batches
from storage import members as member_store
from storage import staging
from storage.reference import stored_hash, stored_registry
from storage.warehouse import Connection, open_warehouse, transaction
from transforms.reference import Reference, ReferenceError, load_registry, load_rules, registry_path


@dataclass(frozen=True)
class RunPlan:
    """What one commit will do; decided up front, under the run lock."""

    run_id: str
    command: str
    as_of: date
    started_at: datetime
    work_dir: str  # this run's staging folder
    discharges: list[Partition]
    snapshot: Partition | None
    registry_file: str  # the registry this run validates and adjudicates with
    registry_changed: bool
    registry_error: str | None
    rules_changed: bool
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    ready_snapshots: list[tuple[str, date]] = field(default_factory=list)
    flow_run_id: str | None = None  # the Prefect flow run that commits it, if any


def new_run_id(started: datetime) -> str:
    """The run's start to the second and 48 random bits: runs started in the same second (a
    backfill's short chunks, a test's nights) must not share an id, or the second is refused
    at its posting (``storage.ledger``: a run id or batch id already posted)."""
    return f"{started:%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"


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
    flow_run_id: str | None = None,
    keep_staging: tuple[str, ...] = (),
) -> RunPlan:
    """Decide what this run processes, recover what a killed run left, record waiting folders.

    Must be called holding the run lock. Bad usage (an unknown partition to re-run, a broken
    rules file) stops here before anything is written. ``keep_staging`` names folders of the
    staging folder that are in use by the caller (a backfill's prefetched chunk), not left over.
    """
    started = datetime.now(UTC)
    run_id = run_id or new_run_id(started)
    rules = _rules(settings)
    found = discover(settings.landing)
    _check_rerun_keys(found.discharges, rerun_keys)
    _remove_stale_staging(settings.staging_dir, keep=keep_staging)
    work_dir = settings.staging_dir / run_id
    work_dir.mkdir(parents=True, exist_ok=True)

    with open_warehouse(settings.warehouse) as con:
        refuse_if_behind(settings, con)
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
            # A partition that already succeeded stays so (record_skipped leaves it as it is):
            # only the others are written, not one statement per partition of all history.
            for p in skipped:
                if states.get((DISCHARGES, p.key), (None,))[0] == "succeeded":
                    continue
                staging.record_skipped(
                    con, kind=DISCHARGES, key=p.key, content_hash=p.content_hash(), run_id=run_id
                )
            staging.mark_running_set(
                con,
                [
                    (r.kind, r.key, r.day, r.source)
                    for r in [*chosen, *([snapshot] if snapshot else [])]
                ],
                run_id=run_id,
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
        flow_run_id=flow_run_id,
    )


def _remove_stale_staging(staging_dir: Path, *, keep: tuple[str, ...] = ()) -> None:
    """Staging folders of killed runs hold personal data and are never read again: remove them.

    Called under the run lock, so no other run is using one; ``keep`` are this process's own.
    """
    if staging_dir.is_dir():
        for folder in staging_dir.iterdir():
            if folder.is_dir() and folder.name not in keep:
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
) -> tuple[list[Partition], list[Partition], list[Partition]]:
    """(to process, skipped as done with this content, waiting for a manifest)."""
    chosen: list[Partition] = []
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
            chosen.append(p)
        elif rerun_failed:
            continue
        elif p.content_hash() == applied:
            # The content in use (delivered again after a failed delivery, or unchanged).
            skipped.append(p)
        elif status == "failed" and p.content_hash() == content and not retry:
            continue  # the same bad content fails the same way until it changes
        else:
            chosen.append(p)
    return chosen, skipped, waiting


def _choose_snapshot(
    con: Connection, snapshots: list[Partition], states: dict, *, force: bool
) -> Partition | None:
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
    return newest


def expected_discharges(settings: Settings, feed_dates: tuple[date, date]) -> list[Partition]:
    """The discharge partitions a backfill's plan of ``feed_dates`` would process if nothing
    changed before it runs: the plan's own choice, without its writes. A guess to validate
    ahead of time (``pipeline.prefetch``); the plan, when it runs, decides."""
    found = discover(settings.landing)
    with open_warehouse(settings.warehouse) as con:
        states = staging.partition_states(con)
    chosen, _skipped, _waiting = _choose_discharges(
        found.discharges,
        states,
        as_of=feed_dates[1],
        feed_dates=feed_dates,
        rerun_keys=None,
        rerun_failed=False,
    )
    return chosen


def feed_dates_between(settings: Settings, first: date, last: date) -> list[date]:
    """The feed dates in [first, last] that have partition folders, in order."""
    found = discover(settings.landing)
    return sorted({p.day for p in found.discharges if first <= p.day <= last})


def cleanup(plan: RunPlan) -> None:
    """The staging folder of a committed run is not needed any more, nor what it held."""
    held.release(Path(plan.work_dir))
    shutil.rmtree(plan.work_dir, ignore_errors=True)
