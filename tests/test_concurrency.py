"""One writer per warehouse (payouts.md, ADR 0005): a second run waits a bounded time, then
stops with exit status 3 having changed nothing; ``claims status`` during a run answers from
the warehouse or says it is busy (exit 3), never with a traceback.

The run being raced is paused with SIGSTOP at a known moment (holding the run lock, with or
without the warehouse file open), so that each case is reached every time, not by luck.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_faults import (
    CLAIMS,
    DRIVER,
    PYTHON,
    Done,
    Place,
    Proc,
    _env,
    assert_paid_exactly_once,
    assert_same,
    build_scenario,
    claims_cli,
    drive,
    lock_holder,
    running,
    start,
    views,
    wait_for_lock,
)


def holds_file(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (DuckDB holds its file while connected)."""
    target = str(path.resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


@contextmanager
def paused_when(proc: Proc, condition: Callable[[], bool], timeout: float = 300) -> Iterator[None]:
    """Stop ``proc`` (SIGSTOP) at a moment when ``condition`` holds; resume it afterwards."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.popen.poll() is None, "the run ended before the moment came"
        assert time.monotonic() < deadline, "the moment never came"
        if condition():
            os.kill(proc.pid, signal.SIGSTOP)
            # Stopped, it cannot open or close anything: check again, for certain.
            if condition():
                break
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.002)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def status(place: Place) -> Done:
    return claims_cli(place, ["status"], env=_env(CLAIMS_LOCK_TIMEOUT="1"), timeout=120)


def assert_no_traceback(done: Done) -> None:
    text = done.stdout + done.stderr
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]


def fingerprint(place: Place) -> dict[str, str]:
    """Every file the pipeline could touch (landing, warehouse, its WAL, lock and staging
    folder, outbox) by content; symbolic links by target."""
    found = {}
    for path in sorted(place.root.rglob("*")):
        rel = str(path.relative_to(place.root))
        if rel.startswith("logs"):
            continue
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "dir"
    return found


@pytest.fixture
def night_two(tmp_path: Path) -> tuple[Place, list[dict[str, object]]]:
    """Night 1 of the fault scenario committed, night 2 delivered and not yet run."""
    steps = build_scenario(tmp_path / "deliveries")
    place = Place(tmp_path / "w")
    first = drive(place, steps[:2])
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copytree(str(steps[2]["src"]), place.landing, dirs_exist_ok=True)
    return place, steps


def test_status_during_a_run(night_two: tuple[Place, list[dict[str, object]]]) -> None:
    """``claims status`` while a run holds the lock answers; while the run has the warehouse
    open it says the warehouse is busy, exit 3; never a traceback."""
    place, steps = night_two
    spec = {
        "landing": str(place.landing),
        "warehouse": str(place.warehouse),
        "outbox": str(place.outbox),
        "steps": [steps[3]],
    }
    run = start([str(PYTHON), "-c", DRIVER, json.dumps(spec)], _env(), place.root / "logs")
    staging = place.warehouse.parent / (place.warehouse.stem + ".staging")

    def planned() -> bool:
        """The run's staging folder exists: its plan made it (and marked its partitions
        running); the run's commit phase removes it before it closes the file."""
        return staging.is_dir() and any(staging.iterdir())

    try:
        # The warehouse file open for writing, planning (its first open; the moments come in
        # the run's order, and the plan's is caught before the run's faster ones): busy, exit 3.
        with paused_when(
            run, lambda: lock_holder(place) == run.pid and holds_file(run.pid, place.warehouse)
        ):
            busy = status(place)
        assert busy.returncode == 3, busy.stdout + busy.stderr
        assert "busy" in busy.stderr.lower(), busy.stderr
        assert_no_traceback(busy)

        # Holding the run lock, the warehouse file closed, planned: validating; status answers.
        with paused_when(
            run,
            lambda: (
                lock_holder(place) == run.pid
                and planned()
                and not holds_file(run.pid, place.warehouse)
            ),
        ):
            answered = status(place)
        assert answered.returncode in (0, 1), answered.stderr[-3000:]
        assert_no_traceback(answered)
        assert "Partitions" in answered.stdout
        assert "running" in answered.stdout  # night 2's partitions, as the run marked them
    finally:
        done = run.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    after = status(place)
    assert after.returncode == 0, after.stdout + after.stderr
    assert_no_traceback(after)


@pytest.mark.slow
@pytest.mark.e2e
def test_second_claims_run_exits_3_and_changes_nothing(
    night_two: tuple[Place, list[dict[str, object]]], tmp_path: Path
) -> None:
    """Two ``claims run`` on one warehouse: the second waits CLAIMS_LOCK_TIMEOUT, exits 3 with a
    clear message, and leaves every file as it was; the first then finishes as if alone."""
    place, steps = night_two
    command = ["run", "--date", str(steps[3]["as_of"])]
    alone = Place(tmp_path / "alone")
    shutil.copytree(place.root, alone.root, symlinks=True)
    reference = claims_cli(alone, command)
    assert reference.returncode == 0, reference.stderr[-3000:]

    first = start([str(CLAIMS), *command, *place.flags()], _env(), place.root / "logs")
    try:
        wait_for_lock(place, first)
        with paused_when(first, lambda: True):
            before = fingerprint(place)
            second = claims_cli(place, command, env=_env(CLAIMS_LOCK_TIMEOUT="2"))
            during = status(place)
            after = fingerprint(place)
    finally:
        done = first.wait()
    assert second.returncode == 3, second.stdout + second.stderr
    assert "busy" in second.stderr.lower() and "CLAIMS_LOCK_TIMEOUT" in second.stderr
    assert_no_traceback(second)
    assert before == after, "the second run changed files"
    assert during.returncode in (0, 1, 3), during.stdout + during.stderr
    assert_no_traceback(during)

    assert done.returncode == 0, done.stderr[-3000:]
    assert not running(place.warehouse)
    assert_same(views(place.warehouse), views(alone.warehouse))
    assert_paid_exactly_once(place)
