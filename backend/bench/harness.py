"""One benchmark run: the plain-diffusers baseline and our server path, same process, same models.

Order: 1. write (or reuse) the models; 2. every scenario in plain diffusers, each pipeline
freed before the next; 3. our server started once (its first image is timed from the start),
every scenario through HTTP (the live scenario through the live route, backend/bench/live.py);
4. the transfer scenario; 5. the report (JSON + table).

``on_report`` (if given) gets the report so far after every side of every scenario, so the
caller can rewrite its JSON each time: a run killed later still leaves what was done. To cut a
slow scenario off, run each one in its own process with a deadline (backend/bench/isolated.py).
"""

from __future__ import annotations

import logging
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.bench.baseline import run_plain
from backend.bench.live import run_live_ours
from backend.bench.report import Timing, build_report, peak_gb, reset_peak, scenario_entry
from backend.bench.scenarios import TRANSFER, Scenario, select
from backend.bench.weights import CONTROLNET, SD15, BenchModels, ensure_models

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    tiny: bool = False
    device: str = "auto"
    dtype: str = "auto"  # auto = float16 on CUDA, float32 elsewhere
    repeats: int = 3
    live_frames: int = 20  # timed frames of the live scenario (instead of repeats)
    scenarios: list[str] | None = None  # None = all
    models_dir: str | None = None  # keep/reuse the models here (None = a temp dir)
    transfer_size: int = 2048
    warmup_s: float = 0.0  # keep warming our path up to this long (background compiles)
    compile: str | None = None  # off | background | blocking, if the engine takes options
    skip_plain: bool = False
    budget_s: float | None = None  # stop starting new work after this long (report still written)


def check_options(options: BenchOptions) -> None:
    if options.repeats < 1:
        raise ValueError(f"repeats={options.repeats!r}: must be at least 1")
    if options.live_frames < 1:
        raise ValueError(f"live_frames={options.live_frames!r}: must be at least 1")
    if options.transfer_size < 64 or options.transfer_size % 8:
        raise ValueError(f"transfer_size={options.transfer_size!r}: a multiple of 8, >= 64")
    if options.budget_s is not None and options.budget_s <= 0:
        raise ValueError(f"budget_s={options.budget_s!r}: must be > 0")
    if options.warmup_s < 0:
        raise ValueError(f"warmup_s={options.warmup_s!r}: must be >= 0")
    if options.dtype not in ("auto", "float16", "bfloat16", "float32"):
        raise ValueError(f"dtype={options.dtype!r}: auto, float16, bfloat16 or float32")
    select(options.scenarios, options.tiny)  # raises on an unknown name


def resolve_device(device: str, dtype: str) -> tuple[str, Any]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float16" if device.startswith("cuda") else "float32"
    return device, getattr(torch, dtype)


def _needed_models(scenarios: tuple[Scenario, ...], transfer: bool) -> list[str]:
    names = {s.model for s in scenarios} | ({SD15} if transfer else set())
    if any(s.controlnet for s in scenarios):
        names.add(CONTROLNET)
    return sorted(names)


def _make_engine(models: BenchModels, device: str, dtype: Any, options: BenchOptions) -> Any:
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    config = EngineConfig(
        models_dir=str(models.models_dir),
        default_model=SD15,
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        cache_models=4,
    )
    if options.compile is not None:
        config.compile = options.compile
    return Engine(config)


def _run_ours(
    scenario: Scenario,
    client: Any,
    device: str,
    options: BenchOptions,
    first_from: float | None,
    budget_deadline: float | None = None,
) -> Timing:
    """Time one scenario through HTTP: first request, warm-ups, then the timed runs."""
    if scenario.live:
        return run_live_ours(
            scenario,
            client,
            device,
            options.live_frames,
            options.warmup_s,
            first_from,
            budget_deadline,
        )
    params, inputs = scenario.job_params(), scenario.inputs()
    reset_peak(device)
    # 1. First request (from server start for the very first scenario).
    start = time.perf_counter() if first_from is None else first_from
    _, pixels, _ = client.run_job(params, inputs)
    first = time.perf_counter() - start
    if pixels.size == 0 or pixels[..., 3].max() == 0:
        raise RuntimeError(f"ours {scenario.name}: an empty layer")
    if pixels.shape[1::-1] != scenario.layer_size():
        raise RuntimeError(f"ours {scenario.name}: got a {pixels.shape[1::-1]} result")
    # 2. Warm-up: at least once; longer while a background compile may still be improving it.
    deadline = time.perf_counter() + options.warmup_s
    if budget_deadline is not None:
        deadline = min(deadline, budget_deadline)
    best = client.run_job(params, inputs)[0]
    while time.perf_counter() < deadline:
        best = min(best, client.run_job(params, inputs)[0])
    # 3. Timed runs.
    runs = [client.run_job(params, inputs)[0] for _ in range(options.repeats)]
    log.info(
        "ours %s: median %.3f s (first %.2f s)", scenario.name, sorted(runs)[len(runs) // 2], first
    )
    timing = Timing(runs=runs, first_s=first, peak_gb=peak_gb(device))
    if scenario.mode == "upscale":  # memory of tiled work: RSS too (the server runs in-process)
        from backend.bench.plain_upscale import peak_rss_gb

        timing.extra.update(peak_rss_gb=peak_rss_gb(), factor=scenario.factor)
    return timing


class OutOfBudget(RuntimeError):
    """The run's time budget is spent: the remaining work is skipped, not failed."""


def _check_budget(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise OutOfBudget("skipped: the run's --budget-s is spent")


def _record(errors: dict[str, str], key: str, exc: BaseException) -> None:
    if isinstance(exc, OutOfBudget):
        log.warning("%s %s", key, exc)
        errors[key] = str(exc)
        return
    log.error("%s failed: %s\n%s", key, exc, traceback.format_exc())
    errors[key] = f"{type(exc).__name__}: {exc}"


def _report(
    options: BenchOptions,
    device: str,
    dtype: Any,
    names: list[str],
    plain: dict[str, Timing],
    ours: dict[str, Timing],
    errors: dict[str, str],
) -> dict[str, Any]:
    entries = {name: scenario_entry(plain.get(name), ours.get(name)) for name in names}
    if TRANSFER in entries:
        entries[TRANSFER]["size"] = options.transfer_size
    config = asdict(options) | {"dtype": str(dtype).replace("torch.", ""), "device": device}
    return build_report(device, config, entries, dict(errors))


def run_bench(
    options: BenchOptions, on_report: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the benchmark; returns the report (see backend.bench.report). ``on_report`` gets
    the report so far after every side of every scenario (plain, ours, transfer)."""
    from backend.bench.server import BenchClient, RunningServer, TimedEngine
    from backend.bench.transfer import run_transfer
    from backend.settings import Settings

    check_options(options)
    scenarios = select(options.scenarios, options.tiny)
    want_transfer = not options.scenarios or TRANSFER in options.scenarios
    device, dtype = resolve_device(options.device, options.dtype)
    deadline = None if options.budget_s is None else time.perf_counter() + options.budget_s
    plain: dict[str, Timing] = {}
    ours: dict[str, Timing] = {}
    errors: dict[str, str] = {}
    names = [s.name for s in scenarios] + ([TRANSFER] if want_transfer else [])

    def emit() -> dict[str, Any]:
        report = _report(options, device, dtype, names, plain, ours, errors)
        if on_report is not None:
            on_report(report)
        return report

    with tempfile.TemporaryDirectory(prefix="dl-bench-") as tmp:
        # 1. Models (random weights unless real ones are already in models_dir).
        models = ensure_models(
            options.models_dir or Path(tmp) / "models",
            tiny=options.tiny,
            device=device,
            dtype=dtype,
            names=_needed_models(scenarios, want_transfer),
        )
        # 2. The plain diffusers baseline, one pipeline at a time.
        for scenario in scenarios if not options.skip_plain else ():
            try:
                _check_budget(deadline)
                plain[scenario.name] = run_plain(
                    scenario, models, device, dtype, options.repeats, options.live_frames
                )
            except Exception as exc:  # report it and go on with the other scenarios
                _record(errors, f"{scenario.name}:plain", exc)
            emit()
        # 3. Our server: started once; its first image counts from here.
        started = time.perf_counter()
        engine = TimedEngine(_make_engine(models, device, dtype, options))
        settings = Settings(
            models_dir=str(models.models_dir),
            output_dir=str(Path(tmp) / "outputs"),
            default_model=SD15,
            device=device,
            dtype=str(dtype).replace("torch.", ""),
            port=0,
            max_jobs_kept=8,
            log_progress=False,
        )
        with RunningServer(settings, engine) as base_url:
            client = BenchClient(base_url)
            try:
                first_from: float | None = started
                for scenario in scenarios:
                    try:
                        _check_budget(deadline)
                        ours[scenario.name] = _run_ours(
                            scenario, client, device, options, first_from, deadline
                        )
                    except Exception as exc:
                        _record(errors, f"{scenario.name}:ours", exc)
                    first_from = None
                    emit()
                # 4. Transfer overhead: PNG both ways vs raw BGRA both ways.
                if want_transfer:
                    try:
                        _check_budget(deadline)
                        png, raw = run_transfer(
                            client, engine, SD15, options.transfer_size, options.repeats
                        )
                        plain[TRANSFER], ours[TRANSFER] = png, raw
                    except Exception as exc:
                        _record(errors, TRANSFER, exc)
                    emit()
            finally:
                client.close()
    # 5. The report (an empty entry for a scenario that produced nothing).
    return emit()
