"""Shared by the LoRA-layout tests of the transformer families: an Engine over a models folder
and a 64 px, 2-step txt2img with a list of (LoRA name, weight)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def engine_over(models_dir: Path):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    return Engine(EngineConfig(models_dir=str(models_dir), device="cpu", dtype="float32"))


def txt2img(engine, model: str, prompt: str, loras: list[tuple[str, float]]) -> np.ndarray:
    """The picture (64, 64, 4) as int, seed 7, Euler, CFG 1."""
    from backend.engine.types import GenerationRequest, LoraInput

    request = GenerationRequest(
        mode="txt2img",
        width=64,
        height=64,
        prompt=prompt,
        model=model,
        steps=2,
        sampler="euler",
        cfg_scale=1.0,
        seed=7,
        loras=[LoraInput(name, weight) for name, weight in loras],
    )
    return engine.generate(request)[0].image.astype(int)
