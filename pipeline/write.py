"""Commit a run: the one warehouse writer stages, adjudicates, posts and batches, in one
transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from config.faults import fault_point
from config.settings import Settings
from landing.partitions import DISCHARGES, ENROLLMENTS
from outbox.summary import CommitResult
from pipeline import held
from pipeline.plan import RunPlan
from pipeline.validate import Validated
from schemas.quarantine import empty_quarantine
from storage import members as member_store
from storage import morning, runs, staging
from storage.adjudication import adjudicate
from storage.ledger import post
from storage.reference import replace_reference
from storage.seals import seal_run
from storage.warehouse import Connection, open_warehouse, transaction


def _read_quarantine(path: str | None) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path else None


def commit(
    settings: Settings, plan: RunPlan, validated: list[Validated], *, full: bool = False
) -> CommitResult:
    """The single writer: stage, adjudicate, post and pay in one transaction.

    ``full`` re-adjudicates every stay whatever changed (the reference a scoped commit is
    proved against).

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
        # A changed rules file or registry (staged by the plan) re-adjudicates everything.
        changed = [("plans", "plan_rules")] if plan.rules_changed else []
        changed += [("hospitals", "hospitals")] if plan.registry_changed else []
        for name, table in changed:
            origin = json.loads((work / f"{name}.origin").read_text())
            frame = pl.read_parquet(work / f"{name}.parquet")
            replace_reference(
                con, name, table, frame, origin=origin["origin"], content_hash=origin["hash"]
            )
            full = True
        # A new snapshot re-matches only the stays its changed people can change (its diff).
        snapshot_loaded = False
        for v in validated:
            if v.partition.kind == ENROLLMENTS:
                snapshot_loaded |= _commit_snapshot(con, plan, v, result)
        _commit_discharges(
            con,
            settings,
            plan,
            sorted(
                (v for v in validated if v.partition.kind == DISCHARGES),
                key=lambda v: (v.partition.day, v.partition.source),
            ),
            result,
        )
        staging.mark_superseded(con, ready=plan.ready_snapshots, run_id=plan.run_id)
        staging.refresh_touched_stays(con)
        fault_point("after_staging")
        result.full_recompute = full or not runs.has_outcomes(con)
        adjudicate(con, full=result.full_recompute, snapshot_diff=snapshot_loaded)
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
        moved = morning.reconciliation(con)
        result.recovery_carried_fen = moved["carried_forward_fen"]
        result.recovery_netted_fen = moved["netted_fen"]
        result.waiting = morning.waiting(con, at, result.stays_by_status)
        runs.record_run(
            con,
            run_id=plan.run_id,
            command=plan.command,
            as_of=plan.as_of,
            started_at=plan.started_at,
            batch_id=result.batch_id,
            summary_json=result.to_json(),
            flow_run_id=plan.flow_run_id,
        )
        # The run's entries, hashed and chained to the previous run's seal (migration 007).
        seal_run(con, run_id=plan.run_id, at=at)
        result.trend = morning.trend(con)
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
            day=v.partition.day,
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
    # In memory when validation ran in this process (``pipeline.held``), else the files.
    slices = held.take(Path(v.staged_path))
    rows = member_store.load_snapshot(
        con,
        staged=Path(v.staged_path) if slices is None else slices,
        snapshot_date=v.partition.day,
        content_hash=v.content_hash or "",
        run_id=plan.run_id,
    )
    staging.record_success(
        con,
        kind=ENROLLMENTS,
        key=v.key,
        day=v.partition.day,
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
    con: Connection,
    settings: Settings,
    plan: RunPlan,
    validated: list[Validated],
    result: CommitResult,
) -> None:
    """Stage the validated partitions together (``staging.stage_discharge_set``: a few
    statements for all of them, each partition judged on its own), record the failed ones."""
    quarantines = {v.key: _read_quarantine(v.quarantine_path) for v in validated}
    outcomes: dict[str, staging.StageResult] = {}
    items: list[staging.StageInput] = []
    for v in validated:
        quarantine = quarantines[v.key]
        if v.status == "failed" or v.staged_path is None or v.content_hash is None:
            outcomes[v.key] = staging.record_failure(
                con,
                kind=DISCHARGES,
                key=v.key,
                day=v.partition.day,
                source=v.partition.source,
                run_id=plan.run_id,
                content_hash=v.content_hash,
                error=v.error or "failed",
                rows_read=v.rows_read,
                quarantine=quarantine,
                retry=v.retry,
            )
        else:
            items.append(
                staging.StageInput(
                    key=v.key,
                    day=v.partition.day,
                    source=v.partition.source,
                    content_hash=v.content_hash,
                    staged=pl.read_parquet(v.staged_path),
                    quarantine=quarantine if quarantine is not None else empty_quarantine(),
                    rows_read=v.rows_read,
                    warnings=v.warnings,
                )
            )
    staged_set = staging.stage_discharge_set(
        con, items, threshold=settings.reject_threshold, run_id=plan.run_id
    )
    outcomes.update((item.key, staged) for item, staged in zip(items, staged_set, strict=True))
    for v in validated:
        staged, quarantine = outcomes[v.key], quarantines[v.key]
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
