"""Checks before a run writes anything: the landing folder, the warehouse file and its pairing
with the outbox (operations.md, *Commands*; payouts.md, *Exactly-once*)."""

from __future__ import annotations

from config.settings import ConfigError, Settings
from landing.partitions import DISCHARGES, ENROLLMENTS
from outbox.pairing import holds_batches, paired_warehouse, record_pairing, record_path
from storage.runs import warehouse_id
from storage.warehouse import open_warehouse

LANDING_FOLDERS = (DISCHARGES, ENROLLMENTS, "reference")


def check_landing(settings: Settings) -> None:
    """A landing folder that does not exist, or holds none of the feed folders, is a
    configuration error: most likely a mistyped path."""
    landing = settings.landing
    if not landing.is_dir():
        raise ConfigError(f"no landing folder at {landing} (--landing, CLAIMS_LANDING)")
    if not any((landing / name).is_dir() for name in LANDING_FOLDERS):
        raise ConfigError(
            f"the landing folder {landing} holds none of "
            f"{', '.join(f'{n}/' for n in LANDING_FOLDERS)}: is it the right folder?"
        )


def check_warehouse_exists(settings: Settings) -> None:
    """Every command but ``init`` (and the demo) needs a warehouse file that exists: a fresh
    file from a mistyped path would start an empty ledger."""
    if not settings.warehouse.is_file():
        raise ConfigError(
            f"no warehouse at {settings.warehouse}: create it with `claims init` "
            "(or give --warehouse / CLAIMS_WAREHOUSE the right path)"
        )


def check_pairing(settings: Settings) -> str:
    """The warehouse must be the one the outbox records; an outbox that records none is paired
    with it now. Returns the warehouse's identity. Call under the run lock."""
    try:
        paired = paired_warehouse(settings.outbox)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if paired is not None and not settings.warehouse.is_file():
        raise _mismatch(settings)
    with open_warehouse(settings.warehouse) as con:
        identity = warehouse_id(con)
    if paired is None:
        record_pairing(settings.outbox, identity)
    elif paired != identity:
        raise _mismatch(settings)
    return identity


def _mismatch(settings: Settings) -> ConfigError:
    return ConfigError(
        f"the outbox {settings.outbox} belongs to another warehouse than {settings.warehouse} "
        f"(see {record_path(settings.outbox).name}): a run from it could pay again stays already "
        "paid. Give the warehouse that issues into this outbox; nothing was written"
    )


def init_warehouse(settings: Settings) -> tuple[bool, str]:
    """``claims init``: create the warehouse (if missing) and pair it with the outbox.

    Returns (created, identity). An outbox that already belongs to another warehouse, or that
    holds batches but records no warehouse while the warehouse is new, is refused.
    """
    created = not settings.warehouse.exists()
    try:
        paired = paired_warehouse(settings.outbox)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if created and (paired is not None or holds_batches(settings.outbox)):
        raise ConfigError(
            f"the outbox {settings.outbox} already holds batches of another warehouse; a new "
            "warehouse beside it could pay them again. Use a new outbox (--outbox), or the "
            "warehouse it belongs to"
        )
    if created:
        settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with open_warehouse(settings.warehouse) as con:
        identity = warehouse_id(con)
    if paired is None:
        record_pairing(settings.outbox, identity)
    elif paired != identity:
        raise _mismatch(settings)
    return created, identity
