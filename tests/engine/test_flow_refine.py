"""Upscale with tiled refine and high-resolution passes on the flow-matching families: their
schedulers have ``scale_noise``, not ``add_noise``, and the shared noise field must not break
them (FLUX.2 klein's refine failed with AttributeError in real Krita, QA3)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engine.families import dit_files, tiny_flux2
from backend.engine.types import EngineConfig, GenerationRequest, UpscaleSettings


def _engine(root, which: str):
    from backend.engine.engine import Engine

    if which == "klein":
        name = tiny_flux2.write_tiny_flux2_klein(root)
    else:
        dit_files.write_comfy_layout(root, "zimage")
        dit_files.write_zimage_transformer(root / "checkpoints" / "zimage.safetensors")
        name = "zimage"
    return Engine(EngineConfig(models_dir=str(root), device="cpu", dtype="float32")), name


@pytest.mark.parametrize("which", ["klein", "zimage"])
def test_upscale_refine_runs_on_flow_matching_families(tmp_path, which) -> None:
    built, name = _engine(tmp_path, which)
    yy, xx = np.mgrid[0:48, 0:40]
    image = np.dstack(
        [40 + 3 * xx, 30 + 2 * yy, np.full((48, 40), 90), np.full((48, 40), 255)]
    ).astype(np.uint8)
    request = GenerationRequest(
        mode="upscale",
        model=name,
        width=40,
        height=48,
        image=image,
        prompt="detail",
        seed=7,
        steps=2,
        strength=0.3,
        sampler="euler",
        cfg_scale=1.0,
        upscale=UpscaleSettings(factor=2.0, refine=True, tile_size=64),
    )
    progress: list = []
    [layer] = built.generate(request, progress.append)
    assert (layer.width, layer.height) == (80, 96) and layer.image[..., 3].min() == 255
    assert progress and progress[-1].step == progress[-1].total
    resized = np.kron(image[..., :3], np.ones((2, 2, 1), np.uint8))
    assert not np.array_equal(layer.image[..., :3], resized)  # the refine changed pixels
