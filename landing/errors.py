"""The one error a delivery raises: the whole partition fails, with a reason to act on."""

from __future__ import annotations

from config.masking import scrub


class PartitionError(Exception):
    """A check that fails the whole partition; nothing of it is used.

    ``check`` names the check (``manifest_json``, ``sha256``, ``row_count``, ...); the message says
    what was expected and what was found, and never carries personal data.
    """

    def __init__(self, check: str, message: str) -> None:
        # File and column names come from the sender and could quote a person: scrub them.
        message = scrub(message)
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message
