"""Issue payment batches: write committed, unissued batches to the outbox, then mark them
issued."""

from __future__ import annotations

from config.faults import fault_point
from config.settings import Settings
from outbox.payments import write_batch
from storage import batches as batch_store
from storage.warehouse import Connection, open_warehouse


def issue_pending_batches(settings: Settings, con: Connection) -> list[str]:
    """Write every committed batch not yet issued (the next run does this first)."""
    issued = []
    for batch_id in batch_store.unissued_batches(con):
        rows = batch_store.batch_frame(con, batch_id)
        seal = batch_store.batch_seal(con, batch_id)
        write_batch(settings.outbox, batch_id, rows, seal=seal, fault=fault_point)
        fault_point("after_batch_file")
        batch_store.mark_issued(con, batch_id)
        issued.append(batch_id)
    return issued


def issue(settings: Settings) -> list[str]:
    """Write the batches the last commit left unissued."""
    with open_warehouse(settings.warehouse) as con:
        return issue_pending_batches(settings, con)
