"""Write a payment batch to the outbox: ``payments.csv``, then ``_manifest.json`` last.

Both are written under a temporary name and renamed, so the bank never sees half a file; a
folder without a manifest is incomplete and ignored by the bank. Rewriting a batch gives the
same bytes, because everything in it comes from committed rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl

from storage.batches import PAYMENT_COLUMNS as COLUMNS
from transforms.money import fen_to_yuan, yuan_text


def batch_dir(outbox: Path, batch_id: str) -> Path:
    return outbox / "payments" / f"batch_id={batch_id}"


def _field(text: pl.Expr) -> pl.Expr:
    """A CSV field as Python's ``csv`` writes it by default (minimal quoting): quoted, with its
    quotes doubled, when it holds a comma, a quote or a line break."""
    needs = text.str.contains(r'[,"\r\n]')
    quoted = pl.concat_str(pl.lit('"'), text.str.replace_all('"', '""', literal=True), pl.lit('"'))
    return pl.when(needs).then(quoted).otherwise(text)


def render_csv(instructions: pl.DataFrame) -> bytes:
    """The batch file's bytes: UTF-8, ``\\n`` line ends, amounts in yuan with 2 decimals.

    ``instructions`` is ``storage.batches.batch_frame``: one vectorised pass over the batch
    (a year's backfill chunk holds ~300,000 instructions), the same bytes as writing each row
    with ``csv.writer`` (``tests/test_payment_file.py`` holds both to that).
    """
    created = pl.from_epoch(pl.col("created_at_us"), time_unit="us").dt.strftime(
        "%Y-%m-%dT%H:%M:%S%.6f+00:00"
    )
    fields = [
        *(
            _field(pl.col(c).fill_null(""))
            for c in ("instruction_id", "batch_id", "national_id", "payee_name", "payee_account")
        ),
        yuan_text(pl.col("amount_fen")),
        pl.lit("CNY"),
        pl.col("entry_count").cast(pl.String),
        created,
    ]
    lines = instructions.select(pl.concat_str(fields, separator=",")).to_series().to_list()
    return "".join(f"{line}\n" for line in [",".join(COLUMNS), *lines]).encode("utf-8")


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
    instructions: pl.DataFrame,
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
        "row_count": instructions.height,
        "amount_sum": fen_to_yuan(int(instructions.get_column("amount_fen").sum())),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if seal is not None:
        manifest["seal"] = seal
    _atomic_write(
        folder / "_manifest.json",
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    )
    return folder
