"""The package graph is enforced: the import contracts pass, and fail on a planted violation."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "root_packages"
]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("*.pyc"))
    return root


def test_the_layers_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        # The bottom importing the face: the cycle issue 13 removed.
        ("config/dates.py", "import claims.cli", "Packages import only downwards"),
        # A transform reaching into the warehouse layer above it.
        ("transforms/money.py", "import storage.warehouse", "Packages import only downwards"),
        ("outbox/report.py", "import prefect", "Only flows/ orchestrates"),
        ("pipeline/plan.py", "import duckdb", "Only storage/ talks to the warehouse"),
    ],
)
def test_a_planted_violation_fails(
    tmp_path: Path, module: str, planted: str, contract: str
) -> None:
    root = copy_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{planted}  # planted by the test\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert broken, done.stdout
    assert contract in done.stdout.split("Contracts:")[0].replace("\n", " ")


LAYERS: list[str] = next(
    contract["layers"]
    for contract in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    if contract["id"] == "layers"
)
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_the_architecture_doc_draws_the_enforced_layers() -> None:
    # The first picture: one line per layer, top first, its packages named as `name/`.
    picture = ARCHITECTURE.split("```")[1]
    drawn = []
    for line in picture.splitlines():
        names = [n for n in re.findall(r"\b([a-z]+)/(?=\s|$)", line) if n in PACKAGES]
        if names:
            drawn.append(" | ".join(names))
    assert drawn == LAYERS


def test_the_architecture_doc_has_a_paragraph_per_package_bottom_up() -> None:
    sections = re.findall(r"^### `([a-z]+)/`$", ARCHITECTURE, re.M)
    assert sections == [p for layer in reversed(LAYERS) for p in layer.split(" | ")]
