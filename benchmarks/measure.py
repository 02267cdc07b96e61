"""Run one command in a fresh process; measure its wall time and the peak memory of its tree.

Peak memory is the larger of two readings: GNU time's maximum resident set size of the step
(``/usr/bin/time -f %M``) and the largest sum of RSS over the step's whole process tree, sampled
every 50 ms (Prefect's ephemeral mode runs its API server in a separate process: a tree is what
a night costs). Not ``wait4``'s ``ru_maxrss`` of our own child: Linux counts in it the RSS the
child had right after ``fork``, i.e. this (parent) process's, whatever the step used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RESULT_PREFIX = "BENCH-RESULT "
GNU_TIME = Path("/usr/bin/time")


@dataclass
class Sample:
    """One measured process."""

    wall_s: float
    peak_rss: int  # bytes
    returncode: int
    timed_out: bool = False
    result: dict[str, object] = field(default_factory=dict)  # the step's BENCH-RESULT line
    log: str = ""


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _kill_group(pgid: int) -> None:
    """SIGKILL the session we started for one step (its id is the step's pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def measure(
    cmd: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float | None = None,
) -> Sample:
    """Run ``cmd``; stdout and stderr go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    time_file = log_path.with_suffix(".maxrss")
    time_file.unlink(missing_ok=True)
    if GNU_TIME.exists():
        cmd = [str(GNU_TIME), "-f", "%M", "-o", str(time_file), *cmd]
    peak = 0
    done = threading.Event()
    with log_path.open("wb") as log:
        started = time.perf_counter()
        child = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        ps = psutil.Process(child.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(ps))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        timed_out = False
        deadline = None if timeout_s is None else started + timeout_s
        try:
            while child.poll() is None:
                if deadline is not None and time.perf_counter() > deadline:
                    timed_out = True
                    _kill_group(child.pid)
                    child.wait()
                    break
                time.sleep(0.02)
        except BaseException:
            # Interrupted: stop our own child's session (the step and whatever it started).
            _kill_group(child.pid)
            done.set()
            raise
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    # Anything of the tree still running (a server the step forgot) is ours to stop.
    _kill_group(child.pid)
    with contextlib.suppress(OSError, ValueError, IndexError):  # killed, or no GNU time
        peak = max(peak, int(time_file.read_text().split()[-1]) * 1024)
    text = log_path.read_text(errors="replace")
    result: dict[str, object] = {}
    for line in text.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return Sample(
        wall_s=wall,
        peak_rss=peak,
        returncode=int(child.returncode),
        timed_out=timed_out,
        result=result,
        log=str(log_path),
    )
