"""The morning report (operations.md, *Flows*; issue 15): one model, an HTML page and markdown.

Real nights through ``run_local``: a recovery carried forward, then netted against a payout; the
reconciliation line adds up to the batch on every night; what waits for a person is counted;
nothing personal reaches the page, the markdown or the partition table.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_review import (
    BED,
    RICH,
    TYPO,
    H,
    _by_id,
    deliver,
    night,
    world,
)

from outbox.report import (
    partition_table,
    reconciles,
    reconciliation_line,
    render_html,
    render_markdown,
    summarize,
    write_report,
)
from outbox.summary import CommitResult


def _no_personal_data(text: str) -> None:
    for who in (BED, TYPO, RICH):
        assert who.nid not in text and who.name not in text
        assert who.nid[:6] + who.nid[6:14] not in text
    assert not re.search(r"\d{15,}", text)


def test_reconciliation_adds_up_to_the_batch_with_recoveries_carried(tmp_path: Path) -> None:
    settings = world(tmp_path)
    # Night 1: BED is paid 600.00 for a stay.
    deliver(settings, 0, [_by_id("R1", BED, "2026-01-05", "2026-01-08")])
    first = night(settings)
    assert first.paid_fen == 60_000 and first.batch_fen == 60_000
    # Night 2: the stay is corrected to nothing in scope (600.00 to recover, nothing to net it
    # against: carried forward), while RICH is paid 300.00 in the same batch.
    deliver(
        settings,
        1,
        [
            _by_id(
                "R1", BED, "2026-01-05", "2026-01-08", version=2, record_type="C", self_pay="0.00"
            ),
            _by_id("R2", RICH, "2026-01-05", "2026-01-08", self_pay="500.00"),
        ],
    )
    second = night(settings)
    s = summarize([second])
    assert (second.paid_fen, second.recovered_fen) == (30_000, 60_000)
    assert (s["carried_fen"], s["netted_fen"], second.batch_fen) == (60_000, 0, 30_000)
    assert reconciles(s)
    assert "+ recoveries carried forward to later payouts 600.00" in reconciliation_line(s)
    assert "= batch total 300.00 CNY" in reconciliation_line(s)
    assert second.waiting["recoveries_by_plan"] == {"RETIREE_INPATIENT": 60_000}
    # Night 3: a new stay of BED pays 1000 × 0.6; the 600.00 owed is netted: batch 0 for BED.
    deliver(settings, 2, [_by_id("R3", BED, "2026-02-05", "2026-02-09", self_pay="1500.00")])
    third = night(settings)
    s3 = summarize([third])
    assert (third.paid_fen, s3["netted_fen"], third.batch_fen) == (90_000, 60_000, 30_000)
    assert reconciles(s3)
    assert third.waiting["recoveries_by_plan"] == {}
    # Several commits of one report (a backfill) add up too.
    assert reconciles(summarize([first, second, third]))
    # The trend is per night (as-of date): these three runs share one, so it adds them up.
    assert [t["paid_fen"] for t in third.trend] == [60_000 + 30_000 + 90_000]
    assert third.trend[0]["stays_by_status"] == {"paid": 2, "zero_benefit": 1}


def test_the_report_says_whether_the_night_passed_and_what_waits(tmp_path: Path) -> None:
    settings = world(tmp_path)
    deliver(
        settings,
        0,
        [
            _by_id("W1", BED, "2026-01-05", "2026-01-12"),
            _by_id("W2", BED, "2026-01-08", "2026-01-14", hospital=H[1]),  # overlap: held
            _by_id("W3", TYPO, "2026-01-05", "2026-01-08", name="吴方"),  # name mismatch
        ],
    )
    result = night(settings)
    assert result.waiting["review_pending"] == 2
    assert result.waiting["review_opened"] == 2
    assert result.waiting["review_by_reason"] == {"name_mismatch": 1, "overlap": 1}
    assert result.waiting["review_at_stake_fen"] == 200_000
    page = write_report(settings.outbox, [result], title="claims run").read_text(encoding="utf-8")
    assert "Passed: every partition processed" in page
    assert "Review: 2 stays pending (name_mismatch 1, overlap 1), 2 opened by this run" in page
    assert "at stake 2000.00 CNY" in page
    assert "This run" in page and "Warehouse running totals (all nights so far)" in page
    markdown = render_markdown([result], title="claims run")
    assert "## ✅ Passed" in markdown and "claims review list" in markdown
    _no_personal_data(page)
    _no_personal_data(markdown)

    failed = CommitResult(
        run_id="r2",
        command="run",
        as_of="2026-03-05",
        partitions={
            "failed": ["feed_date=2026-03-04/source=SHYB"],
            "skipped": [f"feed_date=2026-02-{d:02d}/source=SHYB" for d in range(1, 29)],
        },
        errors={"feed_date=2026-03-04/source=SHYB": "reject_threshold: 9 of 30 rows"},
    )
    page = render_html([failed], title="claims run")
    assert "1 partition failed" in page and "#b71c1c" in page
    assert "claims rerun --partition feed_date=2026-03-04/source=SHYB" in page
    assert "feed_date=2026-02-01" not in page, "skipped partitions are a count, not a list"
    table = partition_table([failed])
    assert table[0]["state"] == "failed" and "claims rerun" in table[0]["next"]
    assert table[-1] == {
        "partition": "28 partition(s)",
        "state": "skipped",
        "reason": "same content already succeeded",
        "next": "",
    }
    _no_personal_data(str(table))
