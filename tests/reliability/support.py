"""Helpers for the reliability tests: settings, the real tiny engine, fault injection, stats."""

from __future__ import annotations

import math
import threading
from pathlib import Path

from backend.settings import Settings


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = {"output_dir": str(tmp_path / "outputs"), "keepalive_s": 0.2, "log_progress": False}
    values.update(overrides)
    return Settings(**values)


def build_tiny_engine(models_root: Path, engine_class=None):
    """The real ``Engine`` (or a subclass) with the tiny model built in ``models_root``, loaded.

    Skips the calling test, loudly, when torch/diffusers cannot be imported.
    """
    import pytest

    try:
        from backend.engine.engine import Engine
        from backend.engine.types import EngineConfig
    except Exception as exc:  # any import failure means there is no real engine here
        pytest.skip(f"!!! REAL ENGINE NOT IMPORTABLE, tiny-model tests SKIPPED: {exc}")
    cls = engine_class or Engine
    config = EngineConfig(default_model="tiny", tiny_dir=str(models_root), device="cpu")
    engine = cls(config)
    engine.preload("tiny")
    return engine


def fault_injecting_engine_class():
    """A subclass of the real Engine that raises an injected error at a chosen denoise step.

    ``engine.inject(error, at_step=1)`` arms it for the next job only: the error is raised
    from inside the diffusers step callback, exactly where a CUDA OOM surfaces on a GPU.
    """
    from backend.engine.engine import Engine

    class FaultInjectingEngine(Engine):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._fault: BaseException | None = None
            self._fault_step = 1
            self._lock = threading.Lock()
            self.faults_raised = 0

        def inject(self, error: BaseException, at_step: int = 1) -> None:
            with self._lock:
                self._fault, self._fault_step = error, at_step

        def _step_callback(self, family, on_progress, cancel):
            inner = super()._step_callback(family, on_progress, cancel)

            def on_step(step, total, latents):
                inner(step, total, latents)
                with self._lock:
                    fault = self._fault if step >= self._fault_step else None
                    if fault is not None:
                        self._fault = None
                        self.faults_raised += 1
                if fault is not None:
                    raise fault

            return on_step

    return FaultInjectingEngine


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("values: empty list has no percentile")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]
