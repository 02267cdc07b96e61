"""What the outbox holds, for ``claims verify`` and ``claims reconcile``: every batch folder with
its manifest and the sha256 of its file (the comparisons are in ``storage.audit``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from storage.audit import BatchOnDisk

_FOLDER = re.compile(r"batch_id=([A-Za-z0-9_.-]{1,64})")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batches_on_disk(outbox: Path) -> list[BatchOnDisk]:
    """Every ``payments/batch_id=…`` folder, in batch id order (other names are not batches)."""
    root = outbox / "payments"
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        m = _FOLDER.fullmatch(folder.name)
        if not m or not folder.is_dir():
            continue
        csv_path = folder / "payments.csv"
        manifest_path = folder / "_manifest.json"
        manifest: dict[str, object] | None = None
        if manifest_path.is_file():
            try:
                loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
                manifest = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                manifest = {}
        has_csv = csv_path.is_file()
        found.append(
            BatchOnDisk(
                batch_id=m.group(1),
                csv_path=csv_path if has_csv else None,
                file_sha256=_sha256(csv_path) if has_csv else None,
                manifest=manifest,
            )
        )
    return found


def issued_batch_ids(outbox: Path) -> list[str]:
    """Batches the bank may have been sent: folders with a manifest (no file is read)."""
    root = outbox / "payments"
    if not root.is_dir():
        return []
    return sorted(
        m.group(1)
        for folder in root.iterdir()
        if (m := _FOLDER.fullmatch(folder.name)) and (folder / "_manifest.json").is_file()
    )
