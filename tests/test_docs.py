"""The docs keep up with the code: every command documented, the README's first block runnable."""

from __future__ import annotations

import re
from pathlib import Path

from claims.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def command_names() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```[a-z]*\n(.*?)```", README, re.S)
    assert first_block is not None
    lines = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert lines == ["make demo", "make test"]


def test_every_command_is_in_the_readme_table() -> None:
    for name in command_names():
        assert f"`claims {name}" in README, f"claims {name} is not documented in README.md"


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    for target in set(re.findall(r"make ([a-z-]+)", README)):
        assert target in targets, f"README mentions make {target}, the Makefile has no such target"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_doc_link_in_the_readme_resolves() -> None:
    for link in re.findall(r"\]\(((?:docs|data)/[^)#]+)\)", README):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_every_review_command_is_documented() -> None:
    from claims.review_cli import review

    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for command in review.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        assert f"`claims review {name}" in README, f"claims review {name} not in README.md"
        assert f"claims review {name}" in operations
    for image in ("img/report-failed-night.png", "img/report-next-morning.png"):
        assert image in operations and (ROOT / "docs" / image).is_file()
