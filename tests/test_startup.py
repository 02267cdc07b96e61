"""Read-only commands start light (issue 16: `status`, `quarantine`, `explain`, `review list`
answer fast).

Behaviour, not timing (timing is `python -m benchmarks.readonly`): in a fresh process, each
read-only command runs to its answer without importing Prefect, pandera, the synthetic data
generator, polars or pyarrow. A heavy import at the top of a command module breaks this test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_flows import build_landing, query

from pipeline import run_local

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = PROJECT / ".venv" / "bin" / "python"
HEAVY = ("prefect", "pandera", "synth", "polars", "pyarrow", "flows", "distributed", "dask")

PROBE = """
import json, sys
from claims.cli import main
args, heavy_names = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["claims", *args]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy_names)
print("PROBE", json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str, str]:
    """A small warehouse after two nights (one partition failed), its paths, a failed
    partition and a paid stay."""
    landing = build_landing(tmp_path_factory.mktemp("startup"))
    run_local(landing.settings, as_of=landing.feed_dates[-1])
    stay = query(
        landing.settings.warehouse,
        "SELECT hospital_code || '/' || settlement_id FROM claim_outcomes "
        "WHERE status = 'paid' LIMIT 1",
    )[0][0]
    assert landing.failing is not None
    return [str(a) for a in landing.cli_paths()], landing.failing, stay


def probe(args: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [str(PYTHON), "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, done.stderr[-2000:]
    result: dict[str, object] = json.loads(line[-1].removeprefix("PROBE "))
    return result


@pytest.mark.parametrize("command", ["status", "quarantine", "explain", "review list", "bad usage"])
def test_read_only_commands_do_not_import_the_heavy_modules(
    warehouse: tuple[list[str], str, str], command: str
) -> None:
    paths, failed, stay = warehouse
    args = {
        "status": ["status", *paths],
        "quarantine": ["quarantine", "--partition", failed, *paths],
        "explain": ["explain", "--stay", stay, *paths],
        "review list": ["review", "list", *paths],
        "bad usage": [
            "backfill",
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-03",
            "--chunk-days",
            "0",
            *paths,
        ],
    }[command]
    result = probe(args)
    # The command did its work (status: 1, a partition failed; bad usage: 2) ...
    assert result["code"] == {"status": 1, "bad usage": 2}.get(command, 0), result
    # ... without loading what only a run needs.
    assert result["heavy"] == [], result


NO_HYPOTHESIS = """
import sys
from pathlib import Path
from claims.cli import main
bad = sys.argv[1]
sys.argv = ["claims", "--help"]
try:
    main()
except SystemExit:
    pass
from transforms.reference import load_rules, ReferenceError
rules = load_rules(Path("data/reference/plans.toml"))
try:
    load_rules(Path(bad))
except ReferenceError as exc:
    refused = str(exc)
else:
    refused = ""
print("PROBE", "hypothesis" in sys.modules and sys.modules["hypothesis"] is not None,
      "pandera.polars" in sys.modules, "priority" in refused)
"""


def test_a_command_process_checks_with_pandera_without_hypothesis(tmp_path: Path) -> None:
    """pandera imports hypothesis where it is installed (the development tools), for strategies
    no command uses; a ``claims`` process goes without it, and pandera still checks."""
    rules = (PROJECT / "data" / "reference" / "plans.toml").read_text(encoding="utf-8")
    bad = tmp_path / "plans.toml"
    # A priority below 1: pandera's check of the rules (``PlanRule``) must refuse it.
    assert "\npriority = 1\n" in rules
    bad.write_text(rules.replace("\npriority = 1\n", "\npriority = 0\n", 1), encoding="utf-8")
    done = subprocess.run(
        [str(PYTHON), "-c", NO_HYPOTHESIS, str(bad)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, done.stderr[-2000:]
    assert line[-1].split()[1:] == ["False", "True", "True"], line[-1]
