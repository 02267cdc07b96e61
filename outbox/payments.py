"""Write a payment batch to the outbox: ``payments.csv``, then ``_manifest.json`` last.

Both are written under a temporary name and renamed, so the bank never sees half a file; a
folder without a manifest is incomplete and ignored by the bank. Rewriting a batch gives the
same bytes, because everything in it comes from committed rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path

from storage.batches import PAYMENT_COLUMNS as COLUMNS
from storage.batches import Instruction
from transforms.money import fen_to_yuan


def batch_dir(outbox: Path, batch_id: str) -> Path:
    return outbox / "payments" / f"batch_id={batch_id}"


def render_csv(instructions: Sequence[Instruction]) -> bytes:
    """The batch file's bytes: UTF-8, ``\\n`` line ends, amounts in yuan with 2 decimals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in instructions:
        writer.writerow(
            [
                i.instruction_id,
                i.batch_id,
                i.national_id,
                i.payee_name,
                i.payee_account,
                fen_to_yuan(i.amount_fen),
                "CNY",
                i.entry_count,
                i.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _atomic_write(path: Path, data: bytes, before_rename: Callable[[], None] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if before_rename:
        before_rename()
    os.replace(tmp, path)


def write_batch(
    outbox: Path,
    batch_id: str,
    instructions: Sequence[Instruction],
    *,
    seal: str | None = None,
    fault: Callable[[str], None] | None = None,
) -> Path:
    """Write (or rewrite, byte for byte) one batch; returns its folder.

    ``seal`` is the ledger seal of the run that made the batch (an extra manifest key beside the
    contract's four): an auditor holding the manifests can check the warehouse's seal chain.
    """
    folder = batch_dir(outbox, batch_id)
    folder.mkdir(parents=True, exist_ok=True)
    data = render_csv(instructions)
    _atomic_write(
        folder / "payments.csv", data, (lambda: fault("batch_file_half")) if fault else None
    )
    manifest = {
        "batch_id": batch_id,
        "row_count": len(instructions),
        "amount_sum": fen_to_yuan(sum(i.amount_fen for i in instructions)),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if seal is not None:
        manifest["seal"] = seal
    _atomic_write(
        folder / "_manifest.json",
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    )
    return folder
