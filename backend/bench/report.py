"""Timings, the JSON report and the printed table of a benchmark run.

JSON shape (``docs/benchmarks/README.md``)::

    {"device": "...", "versions": {...}, "config": {...},
     "scenarios": {"<scenario>": {"plain_s": ..., "ours_s": ..., "ratio": ours/plain,
                                  "min_s": ..., "max_s": ..., ...}},
     "errors": {"<scenario>": "..."}}

``min_s``/``max_s`` are ours; ``plain_min_s``/``plain_max_s`` the baseline's.
"""

from __future__ import annotations

import json
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
    import os

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
        "errors": errors,
    }


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table (pasted into docs/benchmarks/README.md)."""
    lines = [
        f"Device: {report['device']} - torch {report['versions'].get('torch')}, "
        f"diffusers {report['versions'].get('diffusers')}",
        "",
        "| scenario | plain s | ours s | ours/plain | ours min-max s | first image plain/ours s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def f(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for name, e in report["scenarios"].items():
        span = f"{f(e.get('min_s'))}-{f(e.get('max_s'))}"
        first = f"{f(e.get('plain_first_s'), 2)} / {f(e.get('ours_first_s'), 2)}"
        ratio = f(e.get("ratio"), 2)
        lines.append(
            f"| {name} | {f(e.get('plain_s'))} | {f(e.get('ours_s'))} | {ratio} | {span} "
            f"| {first} |"
        )
    for name, message in report["errors"].items():
        lines.append(f"| {name} | error: {message[:80]} | | | | |")
    for name, e in report["scenarios"].items():
        if "plain_fps" in e or "ours_fps" in e:
            lines.append(
                f"\n{name}: plain {f(e.get('plain_fps'), 2)} fps, ours {f(e.get('ours_fps'), 2)}"
                f" fps (1 / median round trip; ours renders in {f(e.get('ours_render_s'))} s)"
            )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return target
