"""The refine pass carries the request's own control layers (contract B): each tile gets the
part of every control under it, scaled like the picture (checked against the tile's pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_upscale import TileEngine, gradient, upscale

from backend.engine.types import ControlInput, EngineConfig


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_each_refine_tile_gets_its_crop_of_the_artists_control(
    tmp_path: Path, tiny_models_dir: Path, factor: float
) -> None:
    folder = tmp_path / "models"
    (folder / "controlnet").mkdir(parents=True)
    (folder / "checkpoints").symlink_to(tiny_models_dir / "checkpoints")
    [net] = sorted((tiny_models_dir / "controlnet").glob("tiny-controlnet.*"))
    (folder / "controlnet" / f"tiny-scribble{net.suffix}").symlink_to(net)
    config = EngineConfig(
        models_dir=str(folder), device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)
    )
    engine = TileEngine(config)
    picture = gradient(100, 80)
    request = upscale(picture, factor=factor, refine=True, tile_size=64)
    request.model = "tiny"
    # The control is the picture itself: a tile's control must show that tile's pixels.
    request.controls = [ControlInput(type="scribble", image=picture.copy(), preprocess=False)]
    engine.generate(request)
    assert len(engine.tasks) >= 4
    for task in engine.tasks:
        [control] = task.controls
        assert control.image.shape == (task.height, task.width, 3)
        assert task.image is not None
        diff = np.abs(control.image.astype(int) - task.image.astype(int))
        assert diff.mean() < 1.0 and diff.max() <= 3, (diff.mean(), diff.max())
