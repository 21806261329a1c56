"""One bench step's process: started in its own process group, its output passed through to
the log (its last lines kept for the error message), its JSON handed back (``on_part``) whenever
the file changes, and at its deadline killed as a group (SIGTERM, then SIGKILL after
``KILL_GRACE_S``). isolated.py plans the steps and runs them one at a time with ``run_step``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

KILL_GRACE_S = 5.0
TAIL_LINES = 40


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stream(process: subprocess.Popen[str], tail: deque[str]) -> threading.Thread:
    """Pass the child's output through (to the log) and keep its last lines."""

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip())

    thread = threading.Thread(target=pump, name="bench-step-output", daemon=True)
    thread.start()
    return thread


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the step's process group, then SIGKILL whatever is left in it (compile workers,
    or a child that did not stop within the grace period)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_step(
    argv: list[str],
    budget: float,
    part: Path,
    on_part: Callable[[dict[str, Any]], None],
    current: list[subprocess.Popen[str]],
    on_start: Callable[[int], None],
) -> tuple[str, int | None, str]:
    """Run one step until it ends or its deadline passes: (status, rc, output tail)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Its own process group, killed as one; the same session as ours, so whatever ends our
    # session (the device tool's command returning) ends it too.
    group: dict[str, Any] = (
        {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    )
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
        **group,
    )
    current.append(process)
    on_start(process.pid)
    pump = _stream(process, tail)
    deadline = time.monotonic() + budget
    seen = 0.0
    status = "done"
    try:
        while True:
            try:
                process.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))
                break
            except subprocess.TimeoutExpired:
                pass
            seen = _merge_if_changed(part, seen, on_part)
            if time.monotonic() >= deadline:
                status = "timed_out"
                kill_group(process)
                break
    finally:
        current.remove(process)
    pump.join(timeout=5)
    _merge_if_changed(part, seen, on_part)
    return status, process.returncode, "\n".join(tail)


def _merge_if_changed(part: Path, seen: float, on_part: Callable[[dict[str, Any]], None]) -> float:
    try:
        mtime = part.stat().st_mtime
    except OSError:
        return seen
    if mtime != seen:
        data = read_json(part)
        if data is not None:
            on_part(data)
    return mtime
