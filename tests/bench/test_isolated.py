"""The isolated benchmark run (``bench --isolate``, what install/gpu_bench.sh runs on the GPU),
on the CPU with the tiny models: each scenario in its own process with its own deadline.

Real processes, real deadlines, real failures: a scenario whose model folder is broken fails
and writes its error, one whose budget is too short is cut off and recorded as timed out, and
the others still run; the JSON parses at every moment (watched while it runs, and after the
runner itself is killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.bench.harness import BenchOptions
from backend.bench.isolated import (
    ACCEL,
    PRIORITY,
    IsolatedOptions,
    check_isolated,
    parse_budgets,
    plan,
    run_isolated,
    step_budget,
)
from backend.bench.scenarios import NAMES, TRANSFER
from backend.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
INPAINT, LIVE = "sd15_inpaint_512", "sd15_live_512"


def _break_model(models: Path, name: str) -> None:
    """A checkpoint folder that looks complete but cannot load (a real failure, no mock)."""
    folder = models / "checkpoints" / name
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{ this is not json", encoding="utf-8")


class _Watcher:
    """Reads the report every 50 ms while the run goes on: every read must parse."""

    def __init__(self, path: Path) -> None:
        self.path, self.snapshots, self.unparsable = path, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        last = None
        while not self._stop.is_set():
            if self.path.exists():
                text = self.path.read_text(encoding="utf-8")
                if text != last:
                    last = text
                    try:
                        self.snapshots.append(json.loads(text))
                    except ValueError:
                        self.unparsable.append(text)
            time.sleep(0.05)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_failure_and_timeout_are_recorded_and_the_other_scenarios_run(tmp_path) -> None:
    models, out = tmp_path / "models", tmp_path / "bench.json"
    _break_model(models, "bench-sd15-inpaint")
    options = IsolatedOptions(
        bench=BenchOptions(
            tiny=True,
            repeats=1,
            transfer_size=128,
            scenarios=[INPAINT, LIVE, TRANSFER],
            models_dir=str(models),
        ),
        out=str(out),
        table=str(tmp_path / "bench.md"),
        budgets_s={LIVE: 0.5, ACCEL: 0.5},  # far too short: cut off, recorded as timed out
        accel_out=str(tmp_path / "accel.json"),
    )
    with _Watcher(out) as watcher:
        returned = run_isolated(options)
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report == returned
    runs, errors = report["runs"], report["errors"]
    assert list(runs) == [INPAINT, LIVE, TRANSFER, ACCEL]  # priority order
    # 1. The broken scenario failed with its own error, on both sides.
    assert runs[INPAINT]["status"] == "failed"
    assert {f"{INPAINT}:plain", f"{INPAINT}:ours"} <= set(errors)
    assert report["scenarios"][INPAINT] == {}
    # 2. The scenario past its budget was cut off, and so was the acceleration check.
    assert runs[LIVE]["status"] == "timed_out" and runs[ACCEL]["status"] == "timed_out"
    assert errors[LIVE].startswith("timed out") and LIVE not in report["scenarios"]
    assert runs[LIVE]["seconds"] < 30  # killed near its 0.5 s deadline, not run to the end
    accel = json.loads((tmp_path / "accel.json").read_text(encoding="utf-8"))
    assert accel["status"] == "timed_out" and accel["errors"]["run"].startswith("timed out")
    # 3. The scenario after them still ran, both sides, with its first image on its own.
    assert runs[TRANSFER]["status"] == "done" and runs[TRANSFER]["rc"] == 0
    transfer = report["scenarios"][TRANSFER]
    assert transfer["plain_s"] > 0 and transfer["ours_s"] > 0 and transfer["size"] == 128
    assert not any(key.startswith(TRANSFER) for key in errors)
    assert report["device"] and report["versions"]["diffusers"] != "missing"
    table = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert f"| {LIVE} | timed_out |" in table and f"| {TRANSFER} | done |" in table
    # 4. The JSON parsed at every moment and was rewritten as each step went.
    assert watcher.unparsable == []
    states = [tuple(s["runs"][n]["status"] for n in runs) for s in watcher.snapshots]
    assert ("failed", "running", "pending", "pending") in states
    assert ("failed", "timed_out", "running", "pending") in states
    assert any(s["runs"][LIVE]["status"] == "running" and "pid" in s["runs"][LIVE]
               for s in watcher.snapshots)  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_leaves_the_finished_scenarios(tmp_path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "backend", "bench", "--tiny", "--isolate", "--repeats", "1"]
    argv += ["--transfer-size", "128", "--scenario", TRANSFER, "--scenario", "sd15_txt2img_512"]
    argv += ["--models-dir", str(tmp_path / "models"), "--out", str(out)]
    runner = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    child = None
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and runner.poll() is None:
            report = json.loads(out.read_text()) if out.exists() else None
            txt2img = report and report["runs"]["sd15_txt2img_512"]
            if txt2img and txt2img["status"] == "running":
                child = txt2img["pid"]
                break
            time.sleep(0.1)
        assert child is not None, "the second scenario never started"
        runner.kill()  # SIGKILL: no handler runs, whatever is on disk is what is left
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
        if child is not None:
            try:
                os.killpg(child, signal.SIGKILL)  # its own group, left behind by the kill
            except ProcessLookupError:
                pass
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["runs"][TRANSFER]["status"] == "done"
    assert report["scenarios"][TRANSFER]["ours_s"] > 0
    assert report["runs"]["sd15_txt2img_512"]["status"] == "running"


def test_budgets_and_plan() -> None:
    assert parse_budgets(["90", "sdxl_txt2img_1024=200"]) == (90.0, {"sdxl_txt2img_1024": 200.0})
    with pytest.raises(ValueError, match="scenario_budget='sd15=fast'"):
        parse_budgets(["sd15=fast"])
    bench = BenchOptions(tiny=True)
    with pytest.raises(ValueError, match="scenario_budget='sd3'"):
        check_isolated(IsolatedOptions(bench=bench, budgets_s={"sd3": 10.0}))
    with pytest.raises(ValueError, match="scenario_budget=sd15_live_512=0"):
        check_isolated(IsolatedOptions(bench=bench, budgets_s={LIVE: 0}))
    everything = plan(IsolatedOptions(bench=bench, accel_out="accel.json"))
    assert everything == list(PRIORITY) and set(everything) == {*NAMES, ACCEL}
    assert everything[:4] == [INPAINT, LIVE, TRANSFER, "sdxl_txt2img_1024"]  # the goals first
    full = IsolatedOptions(bench=BenchOptions(), accel_out="accel.json")
    assert plan(full) == everything  # every scenario has a full-size budget of its own
    assert all(step_budget(full, name) > 0 for name in plan(full))


def test_cli_refuses_a_bad_budget_before_writing_anything(tmp_path, caplog) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--tiny", "--isolate", "--scenario-budget", "nope=3", "--out", str(out)])
    assert code == 2 and "scenario_budget='nope'" in caplog.text
    assert not out.exists()
