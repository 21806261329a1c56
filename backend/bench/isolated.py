"""Every scenario in its own process with its own deadline; the JSON rewritten as results come.

``run_isolated`` runs one step at a time, in priority order (the issue's goals first): each
bench scenario as ``python -m backend bench --scenario NAME --out <work>/NAME.json`` and, with
``accel_out``, the acceleration check (``python -m backend.bench.accel_check``). Each step gets
its budget (capped by what is left of the total budget); past it, the step's process group is
killed (SIGTERM, then SIGKILL), the step is recorded as timed out and the next one starts. A
step that fails records its error and the next one starts. One that would start with too little
time left is recorded as skipped. Running one step's process is step_process.py's task.

The child rewrites its own JSON after every side (plain, ours); the runner merges it into the
report and rewrites ``out`` (atomically) whenever it changes and after every step, so a run
killed at any point leaves a parseable report with every finished scenario in it. ``runs``
holds each step's status (``running`` with its ``pid`` while it runs: what a killed run was
doing), seconds and budget. SIGTERM/SIGINT/SIGHUP end the current step's process group first.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.bench.disk import drop_unneeded
from backend.bench.harness import BenchOptions, check_options
from backend.bench.report import first_images, format_table, write_json, write_text
from backend.bench.scenarios import NAMES
from backend.bench.step_process import kill_group, read_json, run_step

log = logging.getLogger(__name__)

ACCEL = "accel"
#: The order steps run in: the issue's goals first (inpaint, live, transfer, SDXL), then the
#: acceleration check, then the scenarios without a goal of their own.
PRIORITY = (
    "sd15_inpaint_512",
    "sd15_live_512",
    "transfer_2048",
    "sdxl_txt2img_1024",
    ACCEL,
    "sd15_txt2img_512",
    "sd15_controlnet_512",
    "sd15_upscale_2x_2048",
    "flux1_schnell_1024_4steps",
    "zimage_turbo_1024_8steps",
    "flux2_klein_edit_1024",
    "qwen_layered_1024",
)
#: Full-size budgets (seconds, one H100/H200): process start, model writing on first use, the
#: plain side and ours. Tiny runs (CPU) get TINY_BUDGET_S each.
FULL_BUDGETS_S = {
    "sd15_inpaint_512": 110.0,
    "sd15_live_512": 100.0,
    "transfer_2048": 80.0,
    "sdxl_txt2img_1024": 150.0,
    ACCEL: 170.0,
    "sd15_txt2img_512": 90.0,
    "sd15_controlnet_512": 100.0,
    # Estimates, not yet measured on the GPU: 1024² -> 2048² tiled refine (both sides, 3
    # repeats); the transformer families write their random-weight checkpoints on first use
    # (Flux.1 12B ~24 GB, Z-Image 6B ~12 GB in bf16) and load them on both sides.
    "sd15_upscale_2x_2048": 150.0,
    "flux1_schnell_1024_4steps": 360.0,
    "zimage_turbo_1024_8steps": 240.0,
    # Estimates, not measured (issue #17): FLUX.2 klein 4B + Qwen3-4B (~16 GB written), edit at
    # 1024² with one reference, 4 steps; Qwen-Image-Layered 20B + Qwen2.5-VL-7B (~58 GB
    # written: needs that much free disk, see disk.py), 4 layers at 1024², 8 steps of true CFG
    # (~30 s an image estimated): run it alone with --repeats 1 (docs/benchmarks/README.md).
    "flux2_klein_edit_1024": 300.0,
    "qwen_layered_1024": 540.0,
}
TINY_BUDGET_S = 300.0
MIN_START_S = 30.0  # a step is not started with less than min(this, its budget) left


@dataclass
class IsolatedOptions:
    bench: BenchOptions  # what every scenario runs with (its scenarios: the ones to run)
    out: str = "bench.json"
    table: str | None = None
    total_budget_s: float | None = None  # the whole run; None = no limit
    budgets_s: dict[str, float] = field(default_factory=dict)  # per step, over the defaults
    default_budget_s: float | None = None  # every step without its own entry in budgets_s
    accel_out: str | None = None  # also run the acceleration check, writing this JSON
    python: str = sys.executable


def check_isolated(options: IsolatedOptions) -> None:
    check_options(options.bench)
    for name, seconds in options.budgets_s.items():
        if name not in (*NAMES, ACCEL):
            raise ValueError(f"scenario_budget={name!r}: expected one of {', '.join(NAMES)}, accel")
        if seconds <= 0:
            raise ValueError(f"scenario_budget={name}={seconds!r}: must be > 0 seconds")
    for label, value in (
        ("budget_s", options.total_budget_s),
        ("budget", options.default_budget_s),
    ):
        if value is not None and value <= 0:
            raise ValueError(f"{label}={value!r}: must be > 0 seconds")


def parse_budgets(values: list[str] | None) -> tuple[float | None, dict[str, float]]:
    """``["120", "sdxl_txt2img_1024=200"]`` -> (120.0, {"sdxl_txt2img_1024": 200.0})."""
    default: float | None = None
    named: dict[str, float] = {}
    for value in values or []:
        name, _, seconds = value.rpartition("=")
        try:
            number = float(seconds)
        except ValueError:
            raise ValueError(
                f"scenario_budget={value!r}: SECONDS or NAME=SECONDS (e.g. sd15_live_512=90)"
            ) from None
        if name:
            named[name] = number
        else:
            default = number
    return default, named


def plan(options: IsolatedOptions) -> list[str]:
    """The steps to run, in priority order."""
    wanted = set(options.bench.scenarios or NAMES)
    if options.accel_out:
        wanted.add(ACCEL)
    return [name for name in PRIORITY if name in wanted]


def step_budget(options: IsolatedOptions, name: str) -> float:
    if name in options.budgets_s:
        return options.budgets_s[name]
    if options.default_budget_s is not None:
        return options.default_budget_s
    return TINY_BUDGET_S if options.bench.tiny else FULL_BUDGETS_S[name]


def child_argv(options: IsolatedOptions, name: str, out: Path, budget: float) -> list[str]:
    """The command line of one step's process."""
    b = options.bench
    if name == ACCEL:
        argv = [options.python, "-m", "backend.bench.accel_check", "--out", str(out)]
        argv += ["--repeats", str(b.repeats), "--compile-timeout", f"{budget * 0.6:.1f}"]
        return argv + (["--tiny"] if b.tiny else [])
    argv = [options.python, "-m", "backend", "bench", "--scenario", name, "--out", str(out)]
    argv += ["--device", b.device, "--dtype", b.dtype, "--repeats", str(b.repeats)]
    argv += ["--live-frames", str(b.live_frames), "--transfer-size", str(b.transfer_size)]
    argv += ["--warmup-s", str(b.warmup_s), "--models-dir", str(b.models_dir)]
    # The child stops starting new work at 85 % of its budget (ours is skipped, not killed).
    argv += ["--budget-s", f"{budget * 0.85:.2f}"]
    if b.tiny:
        argv.append("--tiny")
    if b.compile is not None:
        argv += ["--compile", b.compile]
    if b.skip_plain:
        argv.append("--skip-plain")
    return argv


class _Report:
    """The merged report, rewritten to ``out`` (and the table) on every change."""

    def __init__(self, options: IsolatedOptions, steps: list[str]) -> None:
        self.options = options
        config = asdict(options.bench) | {"isolated": True}
        config["total_budget_s"] = options.total_budget_s
        self.data: dict[str, Any] = {
            "device": None,
            "torch_device": None,
            "versions": {},
            "config": config,
            "scenarios": {},
            "first_image": {},
            "errors": {},
            "runs": {name: {"status": "pending", "budget_s": step_budget(options, name)}
                     for name in steps},
        }  # fmt: skip

    def merge_child(self, name: str, part: dict[str, Any]) -> None:
        for key in ("device", "torch_device", "versions"):
            if part.get(key) and not self.data[key]:
                self.data[key] = part[key]
        self.data["scenarios"][name] = part.get("scenarios", {}).get(name, {})
        for key, message in part.get("errors", {}).items():
            self.data["errors"][key] = message

    def write(self) -> None:
        self.data["first_image"] = first_images(self.data["scenarios"])
        write_json(self.data, self.options.out)
        if self.options.table:
            write_text(format_table(self.data) + "\n", self.options.table)


def _last_error_line(tail: str) -> str:
    lines = [line for line in tail.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1].strip()[:400]


def run_isolated(options: IsolatedOptions) -> dict[str, Any]:
    """Run every step in its own process; returns the merged report (also written to out)."""
    check_isolated(options)
    steps = plan(options)
    started = time.monotonic()
    current: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="dl-bench-steps-") as work:
        if options.bench.models_dir is None:
            options.bench.models_dir = str(Path(work) / "models")
        report = _Report(options, steps)
        report.write()
        previous = _install_signal_handlers(current, report)
        try:
            for index, name in enumerate(steps):
                _one_step(options, name, Path(work), report, started, current)
                # The full-size models do not all fit on a GPU machine's disk at once.
                drop_unneeded(options.bench.models_dir, steps[: index + 1], steps[index + 1 :])
        finally:
            _restore_signal_handlers(previous)
    return report.data


def _one_step(
    options: IsolatedOptions,
    name: str,
    work: Path,
    report: _Report,
    started: float,
    current: list[subprocess.Popen[str]],
) -> None:
    run = report.data["runs"][name]
    budget = run["budget_s"]
    if options.total_budget_s is not None:
        left = options.total_budget_s - (time.monotonic() - started)
        if left < min(MIN_START_S, budget):
            run["status"] = "skipped"
            report.data["errors"][name] = f"skipped: {max(left, 0):.0f} s of the run's budget left"
            report.write()
            return
        budget = round(min(budget, left), 1)
    part = Path(options.accel_out) if name == ACCEL and options.accel_out else work / f"{name}.json"
    part.unlink(missing_ok=True)  # results of an earlier run must not pass for this one's
    argv = child_argv(options, name, part, budget)
    log.info("bench step %s: budget %.0f s", name, budget)

    def on_start(pid: int) -> None:
        run.update(status="running", pid=pid, budget_s=round(budget, 1))
        report.write()

    def on_part(data: dict[str, Any]) -> None:
        if name != ACCEL:
            report.merge_child(name, data)
            report.write()

    step_start = time.monotonic()
    status, rc, tail = run_step(argv, budget, part, on_part, current, on_start)
    run.pop("pid", None)
    run.update(status=status, rc=rc, seconds=round(time.monotonic() - step_start, 2))
    errors = report.data["errors"]
    if status == "timed_out":
        errors[name] = f"timed out: cut off after {budget:g} s (its budget)"
    elif rc != 0 and not any(key.split(":")[0] == name for key in errors):
        errors[name] = f"failed (exit code {rc}): {_last_error_line(tail)}"
    if status == "done" and rc != 0:
        run["status"] = "failed"
    if name == ACCEL and name in errors:
        _mark_accel(part, run["status"], errors[name])
    report.write()


def _mark_accel(path: Path, status: str, message: str) -> None:
    """Write a timed-out or failed acceleration check's status into its own JSON too."""
    data = read_json(path) or {}
    data.setdefault("errors", {})
    data["errors"]["run"] = message
    data["status"] = status
    write_json(data, path)


def _install_signal_handlers(current: list[subprocess.Popen[str]], report: _Report) -> dict:
    """On SIGTERM/SIGINT/SIGHUP: end the running step's group, record it, exit 143/130/129."""

    def handler(signum: int, _frame: object) -> None:
        for process in list(current):
            kill_group(process)
        for run in report.data["runs"].values():
            if run.get("status") == "running":
                run["status"] = "interrupted"
                run.pop("pid", None)
        report.write()
        raise SystemExit(128 + signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
