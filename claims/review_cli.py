"""``claims review list|approve|reject``: the stays that wait for a person (operations.md).

The checks and the writing live in ``storage.review`` (one code path for every face); this
module reads options and prints, with personal data masked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from claims import options
from claims.options import Landing, Outbox, Warehouse, exit_codes, settings_from

if TYPE_CHECKING:
    from rich.console import Console

    from config.settings import Settings
    from storage.review import ReviewItem

review = typer.Typer(
    name="review",
    help="Stays waiting for a person: list them, approve or reject them (four eyes above the "
    "second-approval limit).",
    no_args_is_help=True,
)

Stay = Annotated[str, typer.Option("--stay", help="HOSPITAL_CODE/SETTLEMENT_ID.")]
By = Annotated[str, typer.Option("--by", help="Who decides (the operator's name or id).")]
Note = Annotated[str, typer.Option("--note", help="Why: what was checked, with whom.")]
Version = Annotated[
    int | None,
    typer.Option(
        "--version",
        help="The stay version you reviewed (from `claims review list`); refused if the stay "
        "has moved on since.",
    ),
]


def _limit(settings: Settings) -> int:
    from config.settings import ConfigError
    from transforms.reference import ReferenceError, load_rules, second_approval_limit_fen

    try:
        return second_approval_limit_fen(load_rules(settings.reference_dir / "plans.toml"))
    except ReferenceError as exc:
        raise ConfigError(f"plan rules: {exc}") from None


def _listed_limit(settings: Settings) -> int:
    """The limit a listing shows, from the rules file's ``[review]`` table alone: a read-only
    listing starts without polars and pandera; a decision checks the whole file (``_limit``)."""
    from config.settings import ConfigError
    from transforms.rules_file import ReferenceError, second_approval_limit_of

    try:
        return second_approval_limit_of(settings.reference_dir / "plans.toml")
    except ReferenceError as exc:
        raise ConfigError(f"plan rules: {exc}") from None


def _age(opened: datetime | None) -> str:
    if opened is None:
        return "?"
    seconds = (datetime.now(UTC) - opened).total_seconds()
    days, rest = divmod(int(max(0, seconds)), 86_400)
    return f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"


def render_items(items: list[ReviewItem]) -> list[str]:
    """The queue as lines of at most ~100 characters, personal data masked."""
    from config.masking import mask_id, mask_name, scrub
    from transforms.yuan import fen_to_yuan

    lines = []
    for it in items:
        lines.append(
            f"{it.hospital_code}/{it.settlement_id}  v{it.version}  {it.reason}  "
            f"self-pay in scope {fen_to_yuan(it.self_pay_in_scope_fen)} CNY  "
            f"approvals {it.approvals}/{it.approvals_needed}  open {_age(it.opened_at)}"
        )
        if it.approved_by:
            lines.append(f"  approved so far by: {scrub(', '.join(it.approved_by))}")
        if it.reason == "overlap":
            lines.append(f"  lies in the same nights as {it.overlapped_stay} (paid first)")
        needs = {
            "name_mismatch": "confirm the person holding the ID is the patient, or reject",
            "ambiguous": "name the enrolment of the right candidate (--enrollment), or reject",
            "overlap": "check both bills: approve if both stays are real, else reject",
        }[it.reason]
        lines.append(f"  needs: {needs}")
        for c in it.candidates:
            lines.append(
                f"  candidate {mask_id(c.national_id)} {mask_name(c.member_name)}  "
                f"born {c.birth_date}  {c.gender}"
            )
            lines.append(f"    enrolments: {', '.join(c.enrollments) or 'none'}")
            lines.append(
                f"    agree: {', '.join(c.agree) or '-'}   differ: {', '.join(c.differ) or '-'}"
            )
        if not it.candidates:
            lines.append("  no candidate in the current snapshot")
        lines.append("")
    return lines


@review.command("list")
def list_items(
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only name_mismatch, ambiguous or overlap."),
    ] = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Open review items: the stay, its reason, what is at stake, candidates (masked), age."""
    from storage.review import open_items

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        items = open_items(settings.warehouse, reason=reason, limit_fen=_listed_limit(settings))
        if not items:
            options.console.print("No stays wait for a person.")
            return
        for line in render_items(items):
            options.console.print(line, highlight=False, markup=False)
        options.console.print(
            f"{len(items)} open item(s). Decide with `claims review approve|reject --stay H/S "
            "--by OPERATOR --note TEXT`; the next run pays or recovers.",
            highlight=False,
            markup=False,
        )


def _decide(
    decision: str,
    stay: str,
    by: str,
    note: str,
    version: int | None,
    enrollment: str | None,
    landing: Landing,
    warehouse: Warehouse,
    outbox: Outbox,
) -> None:
    from config.masking import scrub
    from storage.review import parse_stay, record_decision

    with exit_codes():
        settings = settings_from(landing, warehouse, outbox)
        recorded = record_decision(
            settings.warehouse,
            stay=parse_stay(stay),
            decision=decision,
            operator=by,
            note=note,
            enrollment_id=enrollment,
            version=version,
            limit_fen=_limit(settings),
            lock_timeout_s=settings.lock_timeout_s,
        )
        if recorded.takes_effect:
            said = f"{decision} recorded for {stay} v{recorded.version}; the next run "
            said += "pays it." if decision == "approve" else "recovers what was paid."
        else:
            said = (
                f"approval {recorded.approvals} of {recorded.approvals_needed} recorded for "
                f"{stay} v{recorded.version}: above the second-approval limit, a second, "
                "different operator must approve the same choice."
            )
        options.console.print(scrub(said), highlight=False, markup=False)


@review.command()
def approve(
    stay: Stay,
    by: By,
    note: Note,
    enrollment: Annotated[
        str | None,
        typer.Option("--enrollment", help="Ambiguous stays: the enrolment of your choice."),
    ] = None,
    version: Version = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Approve a stay in review against its current version; the next run pays it."""
    _decide("approve", stay, by, note, version, enrollment, landing, warehouse, outbox)


@review.command()
def reject(
    stay: Stay,
    by: By,
    note: Note,
    version: Version = None,
    landing: Landing = None,
    warehouse: Warehouse = None,
    outbox: Outbox = None,
) -> None:
    """Reject a stay in review (status rejected); the next run recovers what was paid."""
    _decide("reject", stay, by, note, version, None, landing, warehouse, outbox)


def demo_decide(console: Console, settings: Settings) -> str | None:
    """The demo's review story, part one: the queue, then two operators approve the large stay.

    Returns the stay decided (HOSPITAL/SETTLEMENT), or None when the demo has no such item.
    """
    from storage.review import open_items, record_decision
    from synth.review_cases import BIG, OVERLAP_SECOND

    limit = _limit(settings)
    items = open_items(settings.warehouse, limit_fen=limit)
    by_reason: dict[str, int] = {}
    for it in items:
        by_reason[it.reason] = by_reason.get(it.reason, 0) + 1
    console.print(
        "\n[bold]People in the loop[/bold]: "
        + ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items()))
        + " wait in `claims review list`. Two of them:"
    )
    shown = [i for i in items if i.settlement_id in (BIG, OVERLAP_SECOND)]
    for line in render_items(shown):
        console.print("  " + line if line else "", highlight=False, markup=False)
    big = next((i for i in shown if i.settlement_id == BIG), None)
    if big is None:
        return None
    stay = f"{big.hospital_code}/{big.settlement_id}"
    for operator, note in (
        ("wang.li", "called the hospital: the patient's name was mistyped at admission"),
        ("zhao.min", "checked the admission record: same person"),
    ):
        recorded = record_decision(
            settings.warehouse,
            stay=(big.hospital_code, big.settlement_id),
            decision="approve",
            operator=operator,
            note=note,
            version=big.version,
            limit_fen=limit,
            lock_timeout_s=settings.lock_timeout_s,
        )
        console.print(
            f"  claims review approve --stay {stay} --by {operator} --note '…': "
            + (
                "takes effect: the next run pays it"
                if recorded.takes_effect
                else f"approval {recorded.approvals} of {recorded.approvals_needed} "
                "(above the second-approval limit)"
            ),
            highlight=False,
            markup=False,
        )
    return stay


def demo_paid(console: Console, settings: Settings, stay: str) -> None:
    """The demo's review story, part two: what the next run did with the approved stay."""
    from storage.queries import stay_explanation
    from transforms.yuan import fen_to_yuan

    hospital, _, settlement = stay.partition("/")
    o = stay_explanation(settings.warehouse, hospital, settlement)["outcome"][0]
    console.print(
        f"The approved stay {stay} is now {o['status']} (matched by {o['match_method']}): "
        f"{fen_to_yuan(o['paid_fen'])} CNY in this night's batch.",
        highlight=False,
        markup=False,
    )
