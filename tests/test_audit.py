"""Trust, but verify (issue 17): ``claims verify``, the ledger's seals, backup, restore, reconcile.

The fault tests' scenario (four nights with corrections, voids, a failing then re-delivered
partition, a second snapshot with leavers and retroactive ends) is played once with
``run_local`` on a real warehouse; every test copies that world and changes it:

- verify passes on it, and finds each planted fault, naming it;
- the seals: the first run whose entries changed is named; a forger who re-seals the chain is
  caught by the seals in the payment manifests;
- backup → more nights → restore → reconcile → the next night pays exactly what the
  never-restored warehouse pays, and no instruction is paid twice;
- a backup killed half-way (kill -9 at a fault point) is refused by restore.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_faults import NIGHTS, SEED, SNAP1, _strip_labels, build_scenario, outbox_batches
from typer.testing import CliRunner

import synth
from claims.cli import app
from config.masking import mask_id
from config.settings import ConfigError, Settings
from pipeline import run_local
from pipeline.audit import backup, reconcile, verify

PROJECT = Path(__file__).resolve().parent.parent
CLAIMS = PROJECT / ".venv" / "bin" / "claims"
NIGHT_5 = NIGHTS[-1] + timedelta(days=1)


def play(settings: Settings, steps: list[dict[str, Any]]) -> None:
    for step in steps:
        if step["op"] == "deliver":
            shutil.copytree(step["src"], settings.landing, dirs_exist_ok=True, symlinks=True)
            continue
        result = run_local(
            settings,
            command=step["op"],
            as_of=date.fromisoformat(step["as_of"]),
            rerun_keys=step.get("keys"),
        )
        assert not result.failed or step["as_of"] == NIGHTS[2].isoformat(), result.errors


def deliver_night_5(settings: Settings) -> None:
    """A fifth night of discharges of the same population (the scenario's generator)."""
    pop = synth.make_population(400, seed=SEED, as_of=SNAP1)
    hospitals = synth.make_hospitals(20, seed=0)
    stays = synth.make_stays(
        pop,
        hospitals,
        feed_date=NIGHT_5,
        n=90,
        seed=SEED + 5,
        correction_rate=0.1,
        void_rate=0.05,
        history_start=NIGHTS[0],
        labels=True,
    )
    for source, rows in stays.items():
        synth.write_partition(settings.landing, NIGHT_5, source, _strip_labels(rows))


def world(root: Path) -> Settings:
    return Settings.build(root / "landing", root / "warehouse.duckdb", root / "outbox")


def copy_world(src: Settings, root: Path) -> Settings:
    dest = world(root)
    shutil.copytree(src.landing, dest.landing, symlinks=True)
    shutil.copytree(src.outbox, dest.outbox)
    shutil.copy(src.warehouse, dest.warehouse)
    return dest


@dataclass(frozen=True)
class Played:
    steps: list[dict[str, Any]]
    settings: Settings
    backup_after_night_2: Path


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Played:
    """The whole scenario, with a backup taken after its second night."""
    root = tmp_path_factory.mktemp("audit")
    steps = build_scenario(root / "deliveries")
    settings = world(root / "live")
    play(settings, steps[:4])
    backed = backup(settings, root / "backup-night-2")
    assert (backed.folder / "_backup.json").is_file()
    play(settings, steps[4:])
    return Played(steps, settings, backed.folder)


def sql(settings: Settings, statement: str, params: list[Any] | None = None) -> list[Any]:
    con = duckdb.connect(str(settings.warehouse))
    try:
        return con.execute(statement, params or []).fetchall()
    finally:
        con.close()


def checks(settings: Settings) -> Counter[str]:
    return Counter(f.check for f in verify(settings).findings)


def claims_cli(*args: object) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def said(result: Any) -> str:
    """The command's output with the terminal's line folding undone."""
    return " ".join(str(result.output).split())


# ---------------------------------------------------------------------------------------------
# verify passes on a real history, and every batch manifest carries its run's seal
# ---------------------------------------------------------------------------------------------


def test_verify_passes_after_the_scenario(played: Played) -> None:
    verified = verify(played.settings)
    assert verified.findings == []
    assert verified.entries > 0 and verified.runs_sealed >= 5 and verified.batches_on_disk >= 3
    result = claims_cli(
        "verify",
        "--warehouse",
        played.settings.warehouse,
        "--outbox",
        played.settings.outbox,
        "--landing",
        played.settings.landing,
    )
    assert result.exit_code == 0, result.output
    assert "verified" in result.output


def test_each_manifest_carries_the_seal_of_the_run_that_made_it(played: Played) -> None:
    seals = dict(
        sql(
            played.settings,
            "SELECT batch_id, seal FROM payment_batches JOIN ledger_seals USING (run_id)",
        )
    )
    batches, _ = outbox_batches(played.settings.outbox)  # the contract's four keys still check
    assert batches
    for b in batches:
        manifest = json.loads((b.folder / "_manifest.json").read_text(encoding="utf-8"))
        assert set(manifest) == {"batch_id", "row_count", "amount_sum", "sha256", "seal"}
        assert manifest["seal"] == seals[b.batch_id]
        assert re.fullmatch(r"[0-9a-f]{64}", manifest["seal"])


def test_the_chain_recomputed_independently(played: Played) -> None:
    """An auditor's own reading of the seal formula (migration 007), in Python."""
    import hashlib

    runs = sql(played.settings, "SELECT run_id, prev_seal, seal FROM ledger_seals ORDER BY seq")
    entries = sql(
        played.settings,
        "SELECT run_id, entry_id, hospital_code, settlement_id, version, plan_code, national_id, "
        "amount_fen, reason, epoch_us(posted_at) FROM ledger_entries ORDER BY entry_id",
    )
    by_run: dict[str, list[str]] = {}
    for run_id, entry_id, *rest in entries:
        line = "|".join(str(v) for v in (entry_id, run_id, *rest))
        by_run.setdefault(run_id, []).append(line)
    prev = "0" * 64
    for run_id, prev_seal, seal in runs:
        assert prev_seal == prev
        lines = "\n".join(by_run.get(run_id, []))
        assert hashlib.sha256(f"{prev}\n{lines}".encode()).hexdigest() == seal
        prev = seal
    assert set(by_run) <= {r[0] for r in runs}


# ---------------------------------------------------------------------------------------------
# Planted faults: each found and named
# ---------------------------------------------------------------------------------------------


def _first_entry_run(settings: Settings, nth: int = 0) -> tuple[str, str]:
    rows = sql(
        settings,
        "SELECT e.entry_id, e.run_id FROM ledger_entries e JOIN ledger_seals s USING (run_id) "
        "ORDER BY s.seq, e.entry_id",
    )
    return rows[nth]


def _batch_folder(settings: Settings, nth: int = 0) -> Path:
    return sorted((settings.outbox / "payments").glob("batch_id=*"))[nth]


def _edit_amount(settings: Settings) -> str:
    entry_id, run_id = _first_entry_run(settings, 5)
    sql(
        settings,
        "UPDATE ledger_entries SET amount_fen = amount_fen + 100 WHERE entry_id = ?",
        [entry_id],
    )
    return run_id


def _delete_entry(settings: Settings) -> str:
    entry_id, run_id = _first_entry_run(settings, 3)
    sql(settings, "DELETE FROM ledger_entries WHERE entry_id = ?", [entry_id])
    return run_id


def _change_payment_file(settings: Settings) -> str:
    path = _batch_folder(settings, 1) / "payments.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = lines[1].split(",")
    amount = Decimal(cells[5]) + Decimal("10.00")
    cells[5] = f"{amount:.2f}"
    lines[1] = ",".join(cells)
    path.write_text("".join(lines), encoding="utf-8")
    return path.parent.name.removeprefix("batch_id=")


def _remove_batch_folder(settings: Settings) -> str:
    folder = _batch_folder(settings, 0)
    shutil.rmtree(folder)
    return folder.name.removeprefix("batch_id=")


def _wrong_manifest_sum(settings: Settings) -> str:
    path = _batch_folder(settings, 2) / "_manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["amount_sum"] = f"{Decimal(manifest['amount_sum']) + Decimal('0.01'):.2f}"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path.parent.name.removeprefix("batch_id=")


def _recovery_by_hand(settings: Settings) -> str:
    # a member who owes nothing has no balance row (migration 017): one is made up by hand
    (nid,) = sql(settings, "SELECT min(national_id) FROM ledger_entries")[0]
    sql(
        settings,
        "INSERT INTO recovery_balances (national_id, recovery_due_fen) VALUES (?, 500) "
        "ON CONFLICT (national_id) DO UPDATE "
        "SET recovery_due_fen = recovery_balances.recovery_due_fen + 500",
        [nid],
    )
    return "member"


def _drift_balance(settings: Settings) -> str:
    """The ledger intact, the balance a night posts against drifted: the next run would pay
    the wrong difference, so verify must name it."""
    (h, s) = sql(
        settings,
        "SELECT hospital_code, settlement_id FROM ledger_balances "
        "ORDER BY hospital_code, settlement_id LIMIT 1",
    )[0]
    sql(
        settings,
        "UPDATE ledger_balances SET posted_fen = posted_fen + 100 "
        "WHERE hospital_code = ? AND settlement_id = ?",
        [h, s],
    )
    return f"{h}/{s}"


FAULTS = {
    "an edited ledger amount": (
        _edit_amount,
        {"seal_chain", "member_identity", "ledger_target", "ledger_balance"},
    ),
    "a deleted entry": (
        _delete_entry,
        {"seal_chain", "member_identity", "ledger_target", "ledger_balance"},
    ),
    "a drifted balance": (_drift_balance, {"ledger_balance"}),
    "a changed payment file": (
        _change_payment_file,
        {"manifest_sha256", "manifest_amount_sum", "file_rows"},
    ),
    "a missing batch folder": (_remove_batch_folder, {"batch_missing"}),
    "a manifest with a wrong sum": (_wrong_manifest_sum, {"manifest_amount_sum"}),
    "a recovery balance changed by hand": (_recovery_by_hand, {"member_identity"}),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_verify_finds_each_planted_fault(fault: str, played: Played, tmp_path: Path) -> None:
    plant, expected = FAULTS[fault]
    settings = copy_world(played.settings, tmp_path)
    subject = plant(settings)
    found = verify(settings).findings
    assert {f.check for f in found} == expected, found
    assert any(subject in f.subject or subject in f.detail for f in found), found
    assert all(f.todo for f in found)

    result = claims_cli(
        "verify",
        "--warehouse",
        settings.warehouse,
        "--outbox",
        settings.outbox,
        "--landing",
        settings.landing,
    )
    assert result.exit_code == 1, result.output
    for check in expected:
        assert check in result.output
    assert "what to do" in result.output
    # No personal data on the terminal: no member's identity number, name or account.
    people = sql(settings, "SELECT national_id, member_name, payee_account FROM members")
    for nid, name, account in people:
        assert nid not in result.output
        assert account is None or account not in result.output
        assert len(name) < 2 or name not in result.output


def test_a_check_names_its_first_findings_in_order_and_counts_the_rest(
    played: Played, tmp_path: Path
) -> None:
    settings = copy_world(played.settings, tmp_path)
    drifted = sql(
        settings,
        "SELECT hospital_code, settlement_id, plan_code, national_id FROM ledger_balances "
        "ORDER BY ALL LIMIT 27",
    )
    assert len(drifted) == 27
    for key in drifted:
        sql(
            settings,
            "UPDATE ledger_balances SET posted_fen = posted_fen + 100 WHERE hospital_code = ? "
            "AND settlement_id = ? AND plan_code = ? AND national_id = ?",
            list(key),
        )
    found = verify(settings).findings
    assert {f.check for f in found} == {"ledger_balance"}
    assert [f.subject for f in found] == [
        *(f"stay {h}/{s} plan {plan} member {mask_id(nid)}" for h, s, plan, nid in drifted[:20]),
        "and 7 more",
    ]


def test_a_payment_file_counts_the_rows_without_their_twin_either_way(
    played: Played, tmp_path: Path
) -> None:
    """One row's amount changed (its old row and its new one have no twin), a row written
    three times (two copies have none) and a row dropped: five rows, as EXCEPT ALL both ways
    counts."""
    settings = copy_world(played.settings, tmp_path)
    path = _batch_folder(settings, 1) / "payments.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(rows) >= 3
    cells = rows[0].split(",")
    cells[5] = f"{Decimal(cells[5]) + Decimal('10.00'):.2f}"
    path.write_text(
        "".join([header, ",".join(cells), rows[1], rows[1], rows[1], *rows[3:]]), encoding="utf-8"
    )
    found = [f for f in verify(settings).findings if f.check == "file_rows"]
    assert len(found) == 1 and found[0].detail.startswith("5 row(s) of payments.csv differ")


def test_the_first_changed_run_is_named(played: Played, tmp_path: Path) -> None:
    settings = copy_world(played.settings, tmp_path)
    late_entry, later = _first_entry_run(settings, -1)  # an entry of the last run with any
    sql(
        settings,
        "UPDATE ledger_entries SET amount_fen = amount_fen - 1 WHERE entry_id = ?",
        [late_entry],
    )
    (early_entry, early_run) = _first_entry_run(settings, 0)
    assert early_run != later
    sql(
        settings,
        "UPDATE ledger_entries SET reason = 'correction' WHERE entry_id = ?",
        [early_entry],
    )
    chain = [f for f in verify(settings).findings if f.check == "seal_chain"]
    assert chain[0].subject == f"run {early_run}"
    assert "first run whose ledger changed" in chain[0].detail
    assert {f.subject for f in chain} == {f"run {early_run}", f"run {later}"}


def test_a_forger_who_reseals_is_caught_by_the_manifests(played: Played, tmp_path: Path) -> None:
    """Edit an entry and recompute every seal after it (migration 007's own SQL): the chain in
    the warehouse is whole again, but the payment manifests hold the old seals."""
    settings = copy_world(played.settings, tmp_path)
    migration = (PROJECT / "storage" / "migrations" / "007_seals.sql").read_text()
    reseal = migration[migration.index("INSERT INTO ledger_seals") :]
    before = sql(settings, "SELECT run_id, seq, seal FROM ledger_seals ORDER BY seq")

    # The migration's chain is the one the runs sealed as they went.
    sql(settings, "DELETE FROM ledger_seals")
    sql(settings, reseal)
    assert sql(settings, "SELECT run_id, seq, seal FROM ledger_seals ORDER BY seq") == before

    _edit_amount(settings)
    sql(settings, "DELETE FROM ledger_seals")
    sql(settings, reseal)
    found = verify(settings).findings
    checks_found = {f.check for f in found}
    assert "seal_chain" not in checks_found
    assert "manifest_seal" in checks_found


def test_unsealed_entries_are_found(played: Played, tmp_path: Path) -> None:
    settings = copy_world(played.settings, tmp_path)
    sql(
        settings,
        "INSERT INTO ledger_entries SELECT 'X-1', 'X', hospital_code, settlement_id, version, "
        "plan_code, national_id, 0, reason, posted_at FROM ledger_entries LIMIT 1",
    )
    chain = [f for f in verify(settings).findings if f.check == "seal_chain"]
    assert chain and chain[0].subject == "run X" and "no seal" in chain[0].detail


# ---------------------------------------------------------------------------------------------
# backup → more nights → restore → reconcile → the next night pays what it would have
# ---------------------------------------------------------------------------------------------


def paid_in_files(outbox: Path) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Fen per member over every batch file; and instruction ids seen (each must be once)."""
    batches, incomplete = outbox_batches(outbox)
    assert not incomplete
    paid: Counter[str] = Counter()
    ids: Counter[tuple[str, str]] = Counter()
    for b in batches:
        for r in b.rows:
            paid[r["national_id"]] += int(Decimal(r["amount"]) * 100)
            ids[(r["instruction_id"], r["national_id"])] += 1
    return paid, ids


def ledger_by_key(settings: Settings) -> dict[tuple[str, ...], int]:
    rows = sql(
        settings,
        "SELECT hospital_code, settlement_id, plan_code, national_id, sum(amount_fen) "
        "FROM ledger_entries GROUP BY ALL HAVING sum(amount_fen) <> 0",
    )
    return {tuple(r[:4]): int(r[4]) for r in rows}


def last_batch(settings: Settings) -> dict[str, int]:
    rows = sql(
        settings,
        "SELECT national_id, amount_fen FROM payment_instructions WHERE batch_id = "
        "(SELECT batch_id FROM payment_batches ORDER BY created_at DESC LIMIT 1)",
    )
    return {r[0]: int(r[1]) for r in rows}


def test_restore_reconcile_then_the_next_night_pays_what_it_would_have(
    played: Played, tmp_path: Path
) -> None:
    # The never-restored warehouse runs the fifth night.
    never = copy_world(played.settings, tmp_path / "never")
    deliver_night_5(never)
    assert not run_local(never, as_of=NIGHT_5).failed
    assert verify(never).ok

    # The warehouse is lost after night 4: restore the backup of night 2 beside its outbox.
    place = copy_world(played.settings, tmp_path / "restored")
    lost = place.warehouse
    lost.unlink()
    restored = Settings.build(place.landing, tmp_path / "restored" / "again.duckdb", place.outbox)
    done = claims_cli(
        "restore", "--from", played.backup_after_night_2, "--warehouse", restored.warehouse
    )
    assert done.exit_code == 0, done.output
    assert "claims reconcile" in said(done)

    # Behind its outbox: every paying command refuses, nothing changed.
    deliver_night_5(restored)
    files_before = sorted(p for p in restored.outbox.rglob("*") if p.is_file())
    for command, keys in (
        ("run", None),
        ("rerun", ["feed_date=2026-03-02/source=SHYB"]),
        ("backfill", None),
    ):
        with pytest.raises(ConfigError, match="claims reconcile"):
            run_local(restored, command=command, as_of=NIGHT_5, rerun_keys=keys)
    assert sorted(p for p in restored.outbox.rglob("*") if p.is_file()) == files_before
    assert {f.check for f in verify(restored).findings} == {"batch_unknown", "restore_pending"}

    # claims reconcile takes the batches of nights 3 and 4 back as paid; verify then passes.
    result = claims_cli(
        "reconcile",
        "--warehouse",
        restored.warehouse,
        "--outbox",
        restored.outbox,
        "--landing",
        restored.landing,
    )
    assert result.exit_code == 0, result.output
    assert "took 2 issued batch(es) back" in said(result)
    assert verify(restored).ok
    again = reconcile(restored)
    assert again.batches == [] and again.verified is not None and again.verified.ok

    # The next night: the same ledger to the fen, the same payments, nothing paid twice.
    assert not run_local(restored, as_of=NIGHT_5).failed
    assert ledger_by_key(restored) == ledger_by_key(never)
    assert last_batch(restored) == last_batch(never)
    paid_restored, ids_restored = paid_in_files(restored.outbox)
    paid_never, _ = paid_in_files(never.outbox)
    assert paid_restored == paid_never
    assert max(ids_restored.values()) == 1
    assert verify(restored).ok


# ---------------------------------------------------------------------------------------------
# Backups that cannot be trusted are refused
# ---------------------------------------------------------------------------------------------


def test_a_backup_killed_half_way_is_refused_by_restore(played: Played, tmp_path: Path) -> None:
    settings = copy_world(played.settings, tmp_path / "world")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env["CLAIMS_FAULT"] = "backup_half"
    half = tmp_path / "half"
    killed = subprocess.run(
        [
            str(CLAIMS),
            "backup",
            "--to",
            str(half),
            "--warehouse",
            str(settings.warehouse),
            "--outbox",
            str(settings.outbox),
            "--landing",
            str(settings.landing),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == 137, killed.stderr
    assert (half / "warehouse.duckdb").is_file() and not (half / "_backup.json").exists()

    target = tmp_path / "restored.duckdb"
    refused = claims_cli("restore", "--from", half, "--warehouse", target)
    assert refused.exit_code == 2 and not target.exists()
    assert "not a complete backup" in said(refused)

    # The same backup, not killed, restores; into an existing file it is refused.
    whole = claims_cli(
        "backup",
        "--to",
        tmp_path / "whole",
        "--warehouse",
        settings.warehouse,
        "--outbox",
        settings.outbox,
        "--landing",
        settings.landing,
    )
    assert whole.exit_code == 0, whole.output
    assert claims_cli("restore", "--from", tmp_path / "whole", "--warehouse", target).exit_code == 0
    assert sql(Settings.build(None, target, None), "SELECT count(*) FROM ledger_entries") == sql(
        settings, "SELECT count(*) FROM ledger_entries"
    )
    again = claims_cli("restore", "--from", tmp_path / "whole", "--warehouse", target)
    assert again.exit_code == 2 and "exists" in said(again)

    # Restored from the newest backup (nothing issued since), it still pays nothing before
    # `claims reconcile` has verified it.
    restored = Settings.build(settings.landing, target, settings.outbox)
    with pytest.raises(ConfigError, match="not yet reconciled"):
        run_local(restored, as_of=NIGHTS[-1])
    assert [f.check for f in verify(restored).findings] == ["restore_pending"]
    done = reconcile(restored)
    assert done.batches == [] and done.verified is not None and done.verified.ok
    assert verify(restored).ok
    assert run_local(restored, as_of=NIGHTS[-1]).entries == 0

    # A damaged copy (one byte changed) and a backup into a used folder are refused too.
    copy = tmp_path / "whole" / "warehouse.duckdb"
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    damaged = claims_cli(
        "restore", "--from", tmp_path / "whole", "--warehouse", tmp_path / "other.duckdb"
    )
    assert damaged.exit_code == 2 and "checksum" in said(damaged)
    assert not (tmp_path / "other.duckdb").exists()
    used = claims_cli("backup", "--to", tmp_path / "whole", "--warehouse", settings.warehouse)
    assert used.exit_code == 2


def test_verify_without_a_warehouse_is_bad_usage(tmp_path: Path) -> None:
    result = claims_cli(
        "verify",
        "--warehouse",
        tmp_path / "none.duckdb",
        "--outbox",
        tmp_path / "out",
        "--landing",
        tmp_path,
    )
    assert result.exit_code == 2
    assert not (tmp_path / "none.duckdb").exists()


def test_a_run_removed_with_its_seal_is_caught_by_its_manifest(
    played: Played, tmp_path: Path
) -> None:
    """The newest run's entries and seal deleted together leave a whole chain; its batch's
    manifest still names the seal, and the member identity no longer holds."""
    settings = copy_world(played.settings, tmp_path)
    (run_id,) = sql(
        settings,
        "SELECT s.run_id FROM ledger_seals s JOIN payment_batches USING (run_id) "
        "ORDER BY s.seq DESC LIMIT 1",
    )[0]
    (seq,) = sql(settings, "SELECT seq FROM ledger_seals WHERE run_id = ?", [run_id])[0]
    sql(settings, "DELETE FROM ledger_entries WHERE run_id = ?", [run_id])
    sql(settings, "DELETE FROM ledger_seals WHERE seq >= ?", [seq])
    found = {f.check for f in verify(settings).findings}
    assert "manifest_seal" in found and "member_identity" in found
    assert "seal_chain" not in found


@pytest.mark.e2e
def test_every_paying_command_refuses_a_warehouse_behind_its_outbox(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real commands and flows: after a restore, `run`, `rerun` and `backfill` exit 2
    naming `claims reconcile` and change nothing; after `reconcile` the next run pays."""
    from rich.console import Console
    from test_flows import build_landing

    import claims.options as cli_options

    monkeypatch.setattr(cli_options, "console", Console(width=250))
    monkeypatch.setattr(cli_options, "err", Console(width=250, stderr=True))
    landing = build_landing(tmp_path / "w", nights=2, failing_night=None)
    first, second = landing.feed_dates
    paths = landing.cli_paths()
    assert claims_cli("init", *paths).exit_code == 0
    assert claims_cli("run", "--date", first, *paths).exit_code == 0
    assert claims_cli("backup", "--to", tmp_path / "b", *paths).exit_code == 0
    assert claims_cli("run", "--date", second, *paths).exit_code == 0

    restored = tmp_path / "restored.duckdb"
    assert claims_cli("restore", "--from", tmp_path / "b", "--warehouse", restored).exit_code == 0
    settings = Settings.build(landing.settings.landing, restored, landing.settings.outbox)
    paths = ["--landing", settings.landing, "--warehouse", restored, "--outbox", settings.outbox]
    before = sql(settings, "SELECT count(*) FROM ledger_entries")
    for command in (
        ["run", "--date", second],
        ["rerun", "--partition", f"feed_date={second}/source=SHYB"],
        ["rerun", "--failed"],
        ["backfill", "--from", first, "--to", second],
    ):
        refused = claims_cli(*command, *paths)
        assert refused.exit_code == 2, (command, refused.output)
        assert "claims reconcile" in said(refused), refused.output
    assert sql(settings, "SELECT count(*) FROM ledger_entries") == before

    assert claims_cli("reconcile", *paths).exit_code == 0
    paid_before, _ = paid_in_files(settings.outbox)
    assert claims_cli("run", "--date", second, *paths).exit_code == 0
    assert claims_cli("verify", *paths).exit_code == 0
    # The restored warehouse re-posts the second night and pays nothing for it again: the same
    # ledger as the original, the same payments in the (shared) outbox, no instruction twice.
    assert ledger_by_key(settings) == ledger_by_key(landing.settings)
    paid_after, ids = paid_in_files(settings.outbox)
    assert paid_after == paid_before and max(ids.values()) == 1


def test_verify_of_a_warehouse_older_than_the_code_is_bad_usage(
    played: Played, tmp_path: Path
) -> None:
    """Verify reads only, so it cannot migrate: it says how to, exit 2."""
    settings = copy_world(played.settings, tmp_path)
    sql(settings, "DELETE FROM schema_migrations WHERE version = 7")
    result = claims_cli(
        "verify",
        "--warehouse",
        settings.warehouse,
        "--outbox",
        settings.outbox,
        "--landing",
        settings.landing,
    )
    assert result.exit_code == 2 and "007" in said(result), result.output
