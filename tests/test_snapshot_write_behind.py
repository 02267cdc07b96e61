"""A snapshot's load writes its pages to disk beside its inserts, and its staged slices are
removed beside the rest of the commit (ADR 0025).

What these moves must not change: the file stays locked by DuckDB (no descriptor of it is
opened or closed), nothing is committed by them, and a commit that fails after the load leaves
the warehouse as it was and the next run loads the snapshot again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import duckdb
import pytest
from test_flows import SNAPSHOT, build_landing

import pipeline.sequence as sequence
import pipeline.write as write
import storage.warehouse as warehouse
from pipeline import run_local

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="write-behind finds its descriptor in /proc"
)


def _flushers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "warehouse-write-behind"]


def _other_process_opens(path: Path) -> str:
    """What another process gets when it opens the file for writing: 'opened' or the error."""
    code = (
        "import duckdb, sys\n"
        "try:\n"
        f"    duckdb.connect({str(path)!r}).close()\n"
        "    print('opened')\n"
        "except duckdb.Error as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_write_behind_flushes_duckdbs_own_descriptor_and_keeps_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (i BIGINT, s VARCHAR)")
    fd = warehouse._database_fd(con)
    assert fd is not None
    assert os.readlink(f"/proc/self/fd/{fd}") == os.path.realpath(path)
    flushed: list[int] = []
    real = os.fdatasync

    def counted(descriptor: int) -> None:
        flushed.append(descriptor)
        real(descriptor)

    monkeypatch.setattr(os, "fdatasync", counted)
    con.execute("BEGIN TRANSACTION")
    with warehouse.writing_behind(con, every_s=0.01):
        assert len(_flushers()) == 1
        for _ in range(5):
            con.execute("INSERT INTO t SELECT range, range::VARCHAR || 'x' FROM range(300000)")
        threading.Event().wait(0.05)
    assert _flushers() == []  # over with its body
    assert flushed and set(flushed) == {fd}
    con.execute("ROLLBACK")  # nothing of the body was committed by the flushes
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    # Still DuckDB's lock on the file: another process cannot open it.
    assert _other_process_opens(path) != "opened"
    con.close()
    assert _other_process_opens(path) == "opened"


def test_write_behind_without_a_file_just_runs_its_body() -> None:
    con = duckdb.connect()
    assert warehouse._database_fd(con) is None
    with warehouse.writing_behind(con, every_s=0.01):
        assert _flushers() == []
        con.execute("CREATE TABLE t AS SELECT 1 AS i")
    assert con.execute("SELECT i FROM t").fetchone() == (1,)


def _staged_slices(staging: Path) -> list[Path]:
    return sorted(staging.glob("*/snapshot_date-*/staged/part-*.arrow"))


def test_a_commit_removes_the_staged_slices_it_loaded_by_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = build_landing(tmp_path, nights=0)
    settings = landing.settings
    kept: list[Path] = []
    monkeypatch.setattr(sequence, "cleanup", lambda plan: kept.append(Path(plan.work_dir)))
    seen: list[list[Path]] = []
    real_commit = sequence.commit

    def commit(*args: object, **kwargs: object) -> object:
        seen.append(_staged_slices(settings.staging_dir))  # validated: the slices are there
        return real_commit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sequence, "commit", commit)

    result = run_local(settings, as_of=SNAPSHOT)

    assert result.snapshot_rows > 0
    assert len(seen) == 1 and seen[0]
    staged = seen[0][0].parent
    assert not staged.exists()  # removed by the commit's end
    assert (staged.parent / "quarantine.parquet").exists()  # the rest is cleanup's
    assert kept and kept[0].exists()


def test_a_commit_failing_after_the_load_leaves_the_warehouse_and_the_next_run_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = build_landing(tmp_path, nights=0)
    settings = landing.settings
    removed: list[Path] = []
    real_remove = write._Removals.remove

    def remove(self: write._Removals, folder: Path) -> None:
        removed.append(folder)
        real_remove(self, folder)

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("adjudication failed")

    monkeypatch.setattr(write._Removals, "remove", remove)
    with monkeypatch.context() as m:
        m.setattr(write, "adjudicate", fail)
        with pytest.raises(RuntimeError, match="adjudication failed"):
            run_local(settings, as_of=SNAPSHOT)

    assert removed and not removed[0].exists()
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM enrollments").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM current_snapshot").fetchone() == (0,)
    result = run_local(settings, as_of=date.fromisoformat(str(SNAPSHOT)))
    assert result.snapshot_rows > 0
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM enrollments").fetchone() == (
            result.snapshot_rows,
        )
