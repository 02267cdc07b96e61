"""``claims verify``, ``claims backup``, ``claims restore``, ``claims reconcile`` (issue 17).

verify: exit 0 all well, 1 a finding (each named, with what to do), 2 bad usage, 3 busy.
backup/restore/reconcile: 0 done, 2 bad usage or refused (nothing changed), 3 busy; reconcile
exits 1 when the warehouse still has findings after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from claims import options
from claims.options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Landing,
    Outbox,
    Warehouse,
    exit_codes,
    settings_from,
)

if TYPE_CHECKING:
    from pipeline.audit import Verified


def _print_findings(verified: Verified) -> None:
    from rich.markup import escape

    from config.masking import scrub

    console = options.console
    if verified.ok:
        console.print(
            f"[green]verified:[/green] {verified.entries} ledger entries of {verified.members} "
            f"members, {verified.runs_sealed} sealed runs, {verified.batches_on_disk} batch "
            "folders: every promise of payouts.md holds.",
            highlight=False,
        )
        return
    console.print(
        f"[red]{len(verified.findings)} finding(s):[/red]",
        highlight=False,
    )
    for f in verified.findings:
        # Findings mask members already; scrub once more so nothing personal can slip out.
        line = scrub(
            f"{f.check}: {f.subject}: {f.detail}" if f.detail else f"{f.check}: {f.subject}"
        )
        console.print(f"  [red]✗[/red] {escape(line)}", highlight=False)
        console.print(f"      what to do: {escape(scrub(f.todo))}", highlight=False)


def verify(landing: Landing = None, warehouse: Warehouse = None, outbox: Outbox = None) -> None:
    """Read-only self-audit of the money: ledger, instructions, recoveries, targets, batch files
    and manifests, the ledger's seals. Exit 1 on any finding."""
    from pipeline.audit import verify as run_verify

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        verified = run_verify(settings)
        _print_findings(verified)
    raise typer.Exit(EXIT_OK if verified.ok else EXIT_FAILED)


def backup(
    to: Annotated[Path, typer.Option("--to", help="A new (or empty) folder for the backup.")],
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """A consistent copy of the warehouse, taken under the run lock, with a checksum manifest."""
    from pipeline.audit import backup as run_backup

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        done = run_backup(settings, to)
    options.console.print(
        f"backed up {done.bytes} bytes ({done.runs_sealed} sealed runs, {done.batches} issued "
        f"batches) to {done.folder}; sha256 {done.sha256[:16]}…, last seal "
        f"{(done.last_seal or '-')[:16]}…",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK)


def restore(
    from_: Annotated[Path, typer.Option("--from", help="A backup folder (claims backup --to).")],
    warehouse: Annotated[
        Path, typer.Option("--warehouse", help="The NEW warehouse file to restore into.")
    ],
) -> None:
    """Restore a complete backup into a new warehouse file (an existing file: exit 2)."""
    from pipeline.audit import restore as run_restore

    with exit_codes():
        manifest = run_restore(from_, warehouse)
    options.console.print(
        f"restored the backup of {manifest.get('created_at', '?')} "
        f"({manifest.get('runs_sealed', '?')} sealed runs) into {warehouse}.\n"
        "Next: `claims reconcile` with this --warehouse and the outbox, so that batches issued "
        "after the backup are never paid again; every paying command refuses until then.",
        highlight=False,
    )
    raise typer.Exit(EXIT_OK)


def reconcile(landing: Landing = None, warehouse: Warehouse = None, outbox: Outbox = None) -> None:
    """Take batches issued after a backup back into a restored warehouse, as paid; then verify."""
    from rich.markup import escape

    from pipeline.audit import reconcile as run_reconcile
    from transforms.money import fen_to_yuan

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        done = run_reconcile(settings)
    if done.refused:
        options.err.print(
            "[red]refused:[/red] these batches do not match their own manifests; nothing was "
            "recorded:",
            highlight=False,
        )
        for f in done.refused:
            options.err.print(f"  {escape(f.check)}: {escape(f.subject)}: {escape(f.detail)}")
        raise typer.Exit(EXIT_USAGE)
    if done.batches:
        options.console.print(
            f"took {len(done.batches)} issued batch(es) back as paid: {done.instructions} "
            f"instructions, {fen_to_yuan(done.amount_fen)} yuan "
            f"({', '.join(done.batches[:5])}{', …' if len(done.batches) > 5 else ''}); the next "
            "run nets them against what it posts.",
            highlight=False,
        )
    else:
        options.console.print("nothing to reconcile: the warehouse knows every issued batch.")
    assert done.verified is not None
    _print_findings(done.verified)
    raise typer.Exit(EXIT_OK if done.verified.ok else EXIT_FAILED)
