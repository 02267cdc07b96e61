"""The outbox's record of the warehouse whose batches it holds (payouts.md, *Exactly-once*).

``<outbox>/_warehouse.json`` names the identity stored in the warehouse that issues into this
outbox. A run from another warehouse (a mistyped path, a fresh file) would pay again, from an
empty ledger, stays already paid: it is refused before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD = "_warehouse.json"


def record_path(outbox: Path) -> Path:
    return outbox / RECORD


def paired_warehouse(outbox: Path) -> str | None:
    """The identity of the warehouse this outbox belongs to, or None if it records none."""
    path = record_path(outbox)
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["warehouse_id"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a warehouse record") from None
    return str(value)


def holds_batches(outbox: Path) -> bool:
    """Whether payment batches were ever written here."""
    payments = outbox / "payments"
    return payments.is_dir() and any(payments.iterdir())


def record_pairing(outbox: Path, warehouse_id: str) -> None:
    """Write the record atomically (temporary name, then rename)."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = record_path(outbox)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"warehouse_id": warehouse_id}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
