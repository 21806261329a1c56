"""Timings, the JSON report and the printed table of a benchmark run.

JSON shape (``docs/benchmarks/README.md``)::

    {"device": "...", "versions": {...}, "config": {...},
     "scenarios": {"<scenario>": {"plain_s": ..., "ours_s": ..., "ratio": ours/plain,
                                  "min_s": ..., "max_s": ..., ...}},
     "first_image": {"<scenario>": {"plain_s": ..., "ours_s": ...}},
     "errors": {"<scenario>": "..."}}

``min_s``/``max_s`` are ours; ``plain_min_s``/``plain_max_s`` the baseline's.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "diffusers", "transformers", "fastapi", "uvicorn", "pydantic", "numpy")


@dataclass
class Timing:
    runs: list[float]
    first_s: float | None = None
    peak_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def device_sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    if not str(device).startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def device_name(device: str) -> str:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU ({_cpu_count()} cores)"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    try:
        import torch

        out["cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def scenario_entry(plain: Timing | None, ours: Timing | None) -> dict[str, Any]:
    """One scenario's JSON entry; a side that failed leaves its fields out."""
    entry: dict[str, Any] = {}
    if plain is not None:
        entry.update(
            plain_s=_r(plain.median),
            plain_min_s=_r(min(plain.runs)),
            plain_max_s=_r(max(plain.runs)),
            plain_first_s=_r(plain.first_s),
            plain_peak_gb=plain.peak_gb,
        )
        entry.update({f"plain_{k}": v for k, v in plain.extra.items()})
    if ours is not None:
        entry.update(
            ours_s=_r(ours.median),
            min_s=_r(min(ours.runs)),
            max_s=_r(max(ours.runs)),
            ours_first_s=_r(ours.first_s),
            ours_peak_gb=ours.peak_gb,
            ours_runs_s=[_r(r) for r in ours.runs],
        )
        entry.update({f"ours_{k}": v for k, v in ours.extra.items()})
    if plain is not None and ours is not None and plain.median > 0:
        entry["ratio"] = round(ours.median / plain.median, 4)
    return entry


def first_images(scenarios: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first-image latencies on their own (load, any compile, the first generation): not
    part of the medians, which are taken after warm-up. Ours counts from server start."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in scenarios.items():
        pair = {"plain_s": entry.get("plain_first_s"), "ours_s": entry.get("ours_first_s")}
        if any(value is not None for value in pair.values()):
            out[name] = pair
    return out


def build_report(
    device: str,
    config: dict[str, Any],
    scenarios: dict[str, dict[str, Any]],
    errors: dict[str, str],
) -> dict[str, Any]:
    return {
        "device": device_name(device),
        "torch_device": device,
        "versions": versions(),
        "config": config,
        "scenarios": scenarios,
        "first_image": first_images(scenarios),
        "errors": errors,
    }


def format_table(report: dict[str, Any]) -> str:
    """Markdown tables (pasted into docs/benchmarks/README.md): steady-state medians, then the
    first-image latencies, then each isolated scenario's status (``runs``, when present)."""
    lines = [
        f"Device: {report.get('device')} - torch {report.get('versions', {}).get('torch')}, "
        f"diffusers {report.get('versions', {}).get('diffusers')}",
        "",
        "| scenario | plain s | ours s | ours/plain | ours min-max s |",
        "| --- | --- | --- | --- | --- |",
    ]

    def f(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for name, e in report["scenarios"].items():
        span = f"{f(e.get('min_s'))}-{f(e.get('max_s'))}" if "min_s" in e else "-"
        ratio = f(e.get("ratio"), 2)
        lines.append(
            f"| {name} | {f(e.get('plain_s'))} | {f(e.get('ours_s'))} | {ratio} | {span} |"
        )
    for name, message in report["errors"].items():
        lines.append(f"| {name} | error: {message[:80]} | | | |")
    for name, e in report["scenarios"].items():
        if "plain_fps" in e or "ours_fps" in e:
            lines.append(
                f"\n{name}: plain {f(e.get('plain_fps'), 2)} fps, ours {f(e.get('ours_fps'), 2)}"
                f" fps (1 / median round trip; ours renders in {f(e.get('ours_render_s'))} s)"
            )
    first = report.get("first_image") or first_images(report["scenarios"])
    if first:
        lines += ["", "| first image (load + compile + 1st run) | plain s | ours s |"]
        lines.append("| --- | --- | --- |")
        for name, pair in first.items():
            lines.append(f"| {name} | {f(pair.get('plain_s'), 2)} | {f(pair.get('ours_s'), 2)} |")
    runs = report.get("runs") or {}
    if runs:
        lines += ["", "| scenario run | status | seconds | budget s |", "| --- | --- | --- | --- |"]
        for name, run in runs.items():
            lines.append(
                f"| {name} | {run.get('status')} | {f(run.get('seconds'), 1)} "
                f"| {f(run.get('budget_s'), 1)} |"
            )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` atomically (a temp file renamed over ``path``): a run killed at any
    moment leaves the previous complete JSON, never a truncated one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    return target


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` atomically, like ``write_json``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    return target
