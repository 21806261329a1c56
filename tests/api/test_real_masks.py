"""Issue 13's examples end to end: HTTP in, the real engine (tiny model, CPU), a layer out."""

from __future__ import annotations

import numpy as np
import pytest
from png_samples import write_png
from reliability.support import build_tiny_engine

from backend.engine.compositing import flatten
from backend.protocol import PNG

from .conftest import make_settings
from .harness import decode_raw_result, gray_part, job_files, raw_bgra, rgba_image, serve_app

PARAMS = {"prompt": "moss", "steps": 2, "sampler": "euler", "seed": 11, "model": "tiny"}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    engine = build_tiny_engine(tmp_path_factory.mktemp("tiny"))
    settings = make_settings(tmp_path_factory.mktemp("real-masks"))
    with serve_app(settings, engine) as server, server.client(timeout=120) as client:
        yield client


def run(http, params: dict, **parts) -> tuple[dict, np.ndarray]:
    from .harness import wait_job

    response = http.post("/v1/jobs", files=job_files({**PARAMS, **params}, **parts))
    assert response.status_code == 202, response.text
    info = wait_job(http, response.json()["id"], timeout=120)
    assert info["state"] == "done", info
    result = info["results"][0]
    return result, decode_raw_result(http.get(result["raw_url"]))


def outside_unchanged(region: np.ndarray, result: dict, layer: np.ndarray, box) -> None:
    merged = flatten(region, layer, result["x"], result["y"])
    x, y, w, h = box
    outside = np.ones(region.shape[:2], bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(merged[outside], region[outside])
    assert not np.array_equal(merged[y : y + h, x : x + w], region[y : y + h, x : x + w])


def test_alpha_selection_png_repaints_only_its_square(http) -> None:
    """White RGBA mask, selection in its alpha: 20x20 at (56, 30) of 96x64."""
    mask = np.full((64, 96, 4), 255, np.uint8)
    mask[..., 3] = 0
    mask[30:50, 56:76, 3] = 255
    region = rgba_image(96, 64, seed=3)
    result, layer = run(
        http, {"mode": "inpaint"}, image=("r.png", write_png(region, 6, 8), PNG),
        mask=("m.png", write_png(mask, 6, 8), PNG),
    )  # fmt: skip
    assert (result["x"], result["y"], result["width"], result["height"]) == (56, 30, 20, 20)
    assert layer[4:16, 4:16, 3].min() == 255 and layer[..., 3].min() > 0  # feathered edge
    outside_unchanged(region, result, layer, (56, 30, 20, 20))


def test_noise_around_a_square_is_not_selected(http) -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 4, size=(128, 128), dtype=np.uint8)
    mask[48:80, 48:80] = 255
    region = rgba_image(128, 128, seed=4)
    params = {"mode": "inpaint", "width": 128, "height": 128}
    result, layer = run(http, params, image=raw_bgra(region), mask=gray_part(mask))
    assert (result["x"], result["y"], result["width"], result["height"]) == (48, 48, 32, 32)
    outside_unchanged(region, result, layer, (48, 48, 32, 32))


def test_two_by_two_selection_is_fully_repainted(http) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:22, 40:42] = 255
    region = rgba_image(64, 64, seed=6)
    params = {"mode": "inpaint", "width": 64, "height": 64}
    result, layer = run(http, params, image=raw_bgra(region), mask=gray_part(mask))
    assert (result["x"], result["y"], result["width"], result["height"]) == (40, 20, 2, 2)
    assert layer[..., 3].min() == 255  # was at most 66 of 255
    outside_unchanged(region, result, layer, (40, 20, 2, 2))


def test_16_bit_grey_image_without_a_size_runs(http) -> None:
    values = (np.arange(64 * 48).reshape(48, 64) * 5) % 256
    data = write_png(values * 257, 0, 16)
    result, layer = run(http, {"mode": "img2img", "strength": 0.5}, image=("g.png", data, PNG))
    assert (result["width"], result["height"]) == (64, 48) and layer.shape == (48, 64, 4)


def test_img2img_with_a_mask_is_refused_at_submit(http) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    params = {**PARAMS, "mode": "img2img", "width": 64, "height": 64, "strength": 0.5}
    files = job_files(params, image=raw_bgra(rgba_image(64, 64)), mask=gray_part(mask))
    response = http.post("/v1/jobs", files=files)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "mask" and "img2img" in error["message"]
    assert "inpaint" in error["message"]
