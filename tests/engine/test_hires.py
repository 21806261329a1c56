"""High-resolution generation (hires.py) through the real ``Engine.generate`` path with the
deterministic tile fake of test_upscale.py: native first pass, then full-size refine tiles at
the family's strength; progress over both passes; inpaint boxes refined at full size."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_upscale import TileEngine, gradient  # noqa: E402

from backend.engine import families  # noqa: E402
from backend.engine.hires import best_upscaler, wanted  # noqa: E402
from backend.engine.types import (  # noqa: E402
    EngineConfig,
    GenerationRequest,
    Progress,
    UpscalerEntry,
)


@pytest.fixture()
def engine(tiny_models_dir: Path) -> TileEngine:
    config = EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir))
    return TileEngine(config)


def request(mode: str = "txt2img", **changes: object) -> GenerationRequest:
    base = GenerationRequest(mode=mode, width=400, height=300, seed=3, steps=5, model="tiny")
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_automatic_only_when_much_larger_than_native() -> None:
    big, small = request(width=1024, height=1024), request(width=700, height=700)
    assert wanted(big, 1024, 1024, 512, True, "real")
    assert not wanted(small, 700, 700, 512, True, "real")
    assert not wanted(big, 1024, 1024, 512, False, "real")  # the server setting
    big.hires = False
    assert not wanted(big, 1024, 1024, 512, True, "real")  # the job's field
    big.hires = None
    assert not wanted(big, 1024, 1024, 64, True, "tiny")  # tiny built-ins: never by themselves


def test_txt2img_refines_full_size_tiles_at_the_family_strength(engine: TileEngine) -> None:
    seen: list[Progress] = []
    job = request(hires=True)
    [layer] = engine.generate(job, seen.append)
    planned = engine.planned_steps(job)  # tiny's 64 px native size is known once it is loaded
    assert (layer.width, layer.height) == (400, 300)
    first, *tiles = engine.tasks
    assert first.width * first.height < 100 * 100 and first.kind == "txt2img"  # native
    strength = families.get("sd15").hires_strength
    assert len(tiles) > 20
    for task in tiles:
        assert task.kind == "img2img" and task.strength == strength
        assert (task.width, task.height) == (64, 64)  # full-resolution crops, no stretch
        assert task.steps == round(5 * strength) and task.noise is not None
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and steps[-1] == planned == 5 + len(tiles) * task.steps
    assert {p.total for p in seen} == {planned}


def test_hires_false_is_the_single_pass(engine: TileEngine) -> None:
    [layer] = engine.generate(request(hires=False))
    assert len(engine.tasks) == 1 and (layer.width, layer.height) == (400, 300)


def test_large_inpaint_is_refined_at_full_size(engine: TileEngine) -> None:
    image = gradient(400, 300)
    mask = np.zeros((300, 400), np.uint8)
    mask[60:260, 80:330] = 255
    job = request("inpaint", image=image, mask=mask, strength=1.0, hires=True)
    [layer] = engine.generate(job)
    assert (layer.x, layer.y, layer.width, layer.height) == (80, 60, 250, 200)
    first, *tiles = engine.tasks
    assert first.kind == "inpaint" and first.width <= 96
    assert tiles and all((t.width, t.height) == (64, 64) and t.mask is None for t in tiles)
    assert layer.image[..., 3].min() > 0  # inside the selection


def test_best_upscaler_is_the_largest_usable() -> None:
    entries = [
        UpscalerEntry("a.pth", "a", 2, "ESRGAN"),
        UpscalerEntry("b.pth", "b", 4, "ESRGAN", problem="pickle"),
        UpscalerEntry("c.safetensors", "c", 4, "SPAN"),
    ]
    best = best_upscaler(entries)
    assert best is not None and best.name == "c.safetensors"
    assert best_upscaler(entries[1:2]) is None
