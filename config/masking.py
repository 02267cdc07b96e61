"""Masking of personal data for everything a person or a log can read.

National identity numbers, names and bank accounts may live in the warehouse, the quarantine and
the payment files. Everywhere else (logs, Prefect names and artifacts, reports, exceptions,
terminal output) they are masked with these helpers.

>>> mask_id("31010419800101001X")
'310*************1X'
>>> mask_name("张三丰")
'张*'
>>> mask_account("6222021234567890123")
'***************0123'
"""

from __future__ import annotations

import re

# Runs that could be an identity number (15 or 18) or a bank account (12-19): 12+ digits, possibly
# full-width, possibly ending in the X check character. Shorter numbers (counts, money) stay.
_LONG_DIGITS = re.compile(r"[0-9０-９]{11,}[0-9０-９xX]")
# Han characters (and compatibility forms) are names far more often than anything else in messages.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+")


def mask_id(value: str | None) -> str:
    """First 3 and last 2 characters of an identity number, the rest as ``*``."""
    if not value:
        return ""
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]


def mask_name(value: str | None) -> str:
    """A name's first character, then ``*``."""
    if not value:
        return ""
    return value[0] + "*"


def mask_account(value: str | None) -> str:
    """Only the last 4 digits of a bank account."""
    if not value:
        return ""
    return "*" * max(0, len(value) - 4) + value[-4:]


def scrub(text: str) -> str:
    """Mask anything in free text that could be personal data.

    Used on messages that come from outside our code (library exceptions quoting a value, a
    manifest's free text) before they reach a log, a report or the warehouse's error column.

    >>> scrub("could not parse '张三' near 310104198001010012")
    "could not parse '张*' near 310*************12"
    """
    text = _LONG_DIGITS.sub(lambda m: mask_id(m.group(0)), text)
    return _HAN.sub(lambda m: mask_name(m.group(0)), text)
