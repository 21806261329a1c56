"""Decompose into layers over HTTP with the tiny Qwen-Image-Layered set built in code and
loaded through the real inventory and loader: N results bottom first in one group, each with
real alpha, placed at the selection's box."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import make_settings
from .harness import decode_raw_result, gray_part, job_params, png_part, serve_app, submit, wait_job

pytest.importorskip("diffusers")
SIDE = 64


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    from backend.engine.engine import Engine
    from backend.engine.families.tiny_qwen import write_tiny_qwen_image
    from backend.engine.types import EngineConfig

    root = tmp_path_factory.mktemp("layered-api")
    name = write_tiny_qwen_image(root / "models", "layered")
    config = EngineConfig(models_dir=str(root / "models"), device="cpu", dtype="float32")
    with serve_app(make_settings(root), Engine(config)) as server:
        with server.client(timeout=120) as client:
            yield client, name


def region() -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    image = np.zeros((SIDE, SIDE, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = xx * 4, yy * 4, 120, 255
    return image


def test_three_layers_of_a_selection_come_back_as_one_group(layered) -> None:
    client, name = layered
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[8:56, 16:48] = 255
    params = job_params(mode="layers", model=name, width=SIDE, height=SIDE, layers=3)
    params.update(prompt="", cfg_scale=1.0)
    parts = {"image": png_part(region()), "mask": gray_part(mask)}
    info = wait_job(client, submit(client, params, **parts)["id"], timeout=120)
    assert info["state"] == "done", info
    results = info["results"]
    assert [r["layer_index"] for r in results] == [0, 1, 2]
    assert {r["group"] for r in results} == {info["id"]}
    assert len({r["composite_error"] for r in results}) == 1
    assert results[0]["composite_error"] >= 0
    for result in results:
        assert (result["x"], result["y"], result["width"], result["height"]) == (16, 8, 32, 48)
        pixels = decode_raw_result(client.get(result["raw_url"]))
        assert pixels.shape == (48, 32, 4)
        assert len(np.unique(pixels[..., 3])) > 1  # the model's alpha, not a rectangle
    assert (info["step"], info["total_steps"]) == (2, 2)
