"""The morning-after tools of issue 17: verify, backup, restore, reconcile.

``verify`` checks every promise of payouts.md against the warehouse and the outbox (read-only);
``backup`` copies the warehouse under the run lock, its manifest of checksums written last;
``restore`` copies a complete backup into a new file; ``reconcile`` takes the batches a restored
warehouse does not know back into it as paid. A warehouse behind its outbox is refused by every
paying command (``refuse_if_behind``) until reconciled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.faults import fault_point
from config.settings import ConfigError, Settings
from outbox.audit import batches_on_disk, issued_batch_ids
from storage import audit
from storage.audit import Finding
from storage.lock import run_lock
from storage.warehouse import Connection, open_warehouse, transaction

BACKUP_FILE = "warehouse.duckdb"
BACKUP_MANIFEST = "_backup.json"
BACKUP_FORMAT = 1


@dataclass
class Verified:
    """What ``claims verify`` found; ``findings`` empty means all well."""

    findings: list[Finding] = field(default_factory=list)
    members: int = 0
    entries: int = 0
    runs_sealed: int = 0
    batches_on_disk: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def _require_warehouse(settings: Settings) -> None:
    if not settings.warehouse.is_file():
        raise ConfigError(f"no warehouse at {settings.warehouse}")


def verify(settings: Settings) -> Verified:
    """Every check, under the run lock (the warehouse and the outbox must not move meanwhile)."""
    _require_warehouse(settings)
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        disk = batches_on_disk(settings.outbox)
        with open_warehouse(settings.warehouse, read_only=True) as con:
            pending = audit.pending_migrations(con)
            if pending:
                raise ConfigError(
                    f"the warehouse predates this version of claims (migration(s) "
                    f"{', '.join(f'{v:03d}' for v in pending)} not applied; verify reads only): "
                    "`claims backup --to DIR` or the next run applies them, then verify"
                )
            verified = _verify(con, disk)
            if audit.pending_restore(con):
                verified.findings.append(
                    Finding(
                        "restore_pending",
                        "the warehouse",
                        "restored from a backup and not yet reconciled with its outbox",
                        "run `claims reconcile`; paying commands refuse until it passes",
                    )
                )
            return verified


def _verify(con: Connection, disk: list[audit.BatchOnDisk]) -> Verified:
    result = Verified(batches_on_disk=len(disk))
    result.findings += audit.seal_chain(con)
    result.findings += audit.member_identity(con)
    result.findings += audit.ledger_targets(con)
    result.findings += audit.ledger_balances(con)
    result.findings += audit.instruction_grain(con)
    result.findings += audit.entry_grain(con)
    result.findings += audit.stay_grain(con)
    result.findings += audit.outcome_amounts(con)
    result.findings += audit.member_numbers(con)
    result.findings += audit.recovery_plans(con)
    result.findings += audit.batch_findings(con, disk)
    row = con.execute(
        "SELECT (SELECT count(*) FROM ledger_entries), "
        "(SELECT count(DISTINCT national_id) FROM ledger_entries)"
    ).fetchone()
    result.entries, result.members = (int(row[0]), int(row[1])) if row else (0, 0)
    result.runs_sealed = audit.last_seal(con)[0]
    return result


# ---------------------------------------------------------------------------------------------
# A warehouse behind its outbox
# ---------------------------------------------------------------------------------------------


def refuse_if_behind(settings: Settings, con: Connection) -> None:
    """Stop a paying command (exit 2) when the warehouse was restored and not yet reconciled,
    or when the outbox holds issued batches it does not know (an older copy, however made): it
    would pay them again."""
    if audit.pending_restore(con):
        raise ConfigError(
            "this warehouse was restored from a backup and not yet reconciled with its outbox: "
            "run `claims reconcile` (it takes back the batches issued after the backup and "
            "verifies); paying waits until it passes. Nothing was changed."
        )
    unknown = audit.unknown_batches(con, issued_batch_ids(settings.outbox))
    if unknown:
        raise ConfigError(
            f"the outbox holds {len(unknown)} issued batch(es) this warehouse does not know "
            f"({', '.join(unknown[:3])}{', …' if len(unknown) > 3 else ''}): it is behind its "
            "outbox (restored from an older backup?) and would pay them again. Run "
            "`claims reconcile` first, then `claims verify`; if --warehouse is simply the wrong "
            "file, point it at this outbox's warehouse. Nothing was changed."
        )


@dataclass(frozen=True)
class Reconciled:
    batches: list[str]
    instructions: int
    amount_fen: int
    refused: list[Finding]
    verified: Verified | None


def reconcile(settings: Settings) -> Reconciled:
    """Take issued batches the warehouse does not know back into it, as paid, then verify."""
    _require_warehouse(settings)
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        disk = batches_on_disk(settings.outbox)
        with open_warehouse(settings.warehouse) as con:
            ids = audit.unknown_batches(con, issued_batch_ids(settings.outbox))
            taken = audit.TakenBack([], 0, 0)
            if ids:
                with transaction(con):
                    taken, refused = audit.take_back(con, disk, ids, datetime.now(UTC))
                if refused:
                    return Reconciled([], 0, 0, refused, None)
            # The checks read only; on this connection, so that nothing runs in between.
            verified = _verify(con, disk)
            if verified.ok:
                with transaction(con):
                    audit.mark_reconciled(con, datetime.now(UTC))
    return Reconciled(taken.batches, taken.instructions, taken.amount_fen, [], verified)


# ---------------------------------------------------------------------------------------------
# Backup and restore
# ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_synced(src: Path, dest: Path) -> None:
    """Copy under a temporary name, fsync, rename: ``dest`` is complete or absent."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)


@dataclass(frozen=True)
class BackedUp:
    folder: Path
    bytes: int
    sha256: str
    runs_sealed: int
    last_seal: str | None
    batches: int


def backup(settings: Settings, to: Path) -> BackedUp:
    """A consistent copy of the warehouse in ``to`` (new or empty), taken under the run lock.

    The warehouse is checkpointed (the log written into the file) and copied while no run can
    write; ``_backup.json`` with the copy's checksum is written last, so a backup killed half-way
    has none and ``restore`` refuses it.
    """
    _require_warehouse(settings)
    to = to.expanduser().resolve()
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise ConfigError(f"{to} is not an empty folder: a backup goes into a new one")
    with run_lock(settings.warehouse, settings.lock_timeout_s):
        with open_warehouse(settings.warehouse) as con:
            audit.checkpoint(con)
            runs_sealed, seal = audit.last_seal(con)
            row = con.execute(
                "SELECT count(*) FROM payment_batches WHERE issued_at IS NOT NULL"
            ).fetchone()
            batches = int(row[0]) if row else 0
        to.mkdir(parents=True, exist_ok=True)
        copy = to / BACKUP_FILE
        _copy_synced(settings.warehouse, copy)
        fault_point("backup_half")
        digest, size = _sha256(copy), copy.stat().st_size
        manifest = {
            "format": BACKUP_FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": {BACKUP_FILE: {"sha256": digest, "bytes": size}},
            "runs_sealed": runs_sealed,
            "last_seal": seal,
            "issued_batches": batches,
        }
        tmp = to / f".{BACKUP_MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, to / BACKUP_MANIFEST)
    return BackedUp(to, size, digest, runs_sealed, seal, batches)


def read_backup(folder: Path) -> dict[str, Any]:
    """A complete backup's manifest, its file checked; ``ConfigError`` for anything less."""
    path = folder / BACKUP_MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{folder} is not a complete backup: it has no {BACKUP_MANIFEST} (a backup stopped "
            "half-way leaves none); use another backup"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        expected = manifest["files"][BACKUP_FILE]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path.name} in {folder} is unreadable; use another backup") from None
    copy = folder / BACKUP_FILE
    if not copy.is_file() or _sha256(copy) != expected.get("sha256"):
        raise ConfigError(
            f"the warehouse copy in {folder} does not match its checksum: the backup is damaged; "
            "use another backup"
        )
    return dict(manifest)


def restore(src: Path, target: Path) -> dict[str, Any]:
    """Copy a complete backup into a new warehouse file (an existing file is refused)."""
    src = src.expanduser().resolve()
    target = target.expanduser().resolve()
    if target.exists():
        raise ConfigError(
            f"{target} exists: a restore goes into a new file, never over a warehouse"
        )
    manifest = read_backup(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_synced(src / BACKUP_FILE, target)
    if _sha256(target) != manifest["files"][BACKUP_FILE]["sha256"]:
        target.unlink()
        raise ConfigError(f"the copy at {target} does not match the backup's checksum; removed")
    # Paying waits for `claims reconcile` (refuse_if_behind), whatever the outbox holds.
    with open_warehouse(target) as con, transaction(con):
        audit.mark_restored(
            con,
            at=datetime.now(UTC),
            backup_created_at=str(manifest.get("created_at", "")),
            last_seal=manifest.get("last_seal"),
        )
    return manifest
