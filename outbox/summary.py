"""What a run did, as figures: the one model the run reports and artifacts are built from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CommitResult:
    """What a commit did: the figures of the run report (no personal data)."""

    run_id: str
    command: str
    as_of: str
    partitions: dict[str, list[str]] = field(default_factory=dict)  # status → keys
    rows_read: int = 0
    rows_quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # key → reason
    snapshot: str | None = None
    snapshot_rows: int | None = None
    full_recompute: bool = False
    stays_by_status: dict[str, int] = field(default_factory=dict)
    paid_by_plan: dict[str, int] = field(default_factory=dict)
    recovered_by_plan: dict[str, int] = field(default_factory=dict)
    entries: int = 0
    paid_fen: int = 0
    recovered_fen: int = 0
    batch_id: str | None = None
    batch_instructions: int = 0
    batch_fen: int = 0
    notes: list[str] = field(default_factory=list)
    # batch = paid − recovered + carried_forward − netted (recovery balances; storage/morning.py)
    recovery_carried_fen: int = 0
    recovery_netted_fen: int = 0
    # what waits for a person after this run (counts and money only)
    waiting: dict[str, Any] = field(default_factory=dict)
    # the last 30 nights: paid, recovered and stays by status per as-of date
    trend: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.partitions.get("failed"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True, default=str)
