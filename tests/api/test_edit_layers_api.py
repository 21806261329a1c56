"""Modes "edit" and "layers" over HTTP: the real ``Engine`` with the test-only families of
tests/engine/edit_family.py (real pixel work, no weights), checked at submit and run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import make_settings
from .harness import (
    decode_raw_result,
    gray_part,
    job_params,
    png_part,
    raw_bgra,
    serve_app,
    submit,
    wait_job,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from edit_family import FakeModels, edit_families  # noqa: E402, F401

W, H = 96, 64
pytestmark = pytest.mark.usefixtures("edit_families")


@pytest.fixture
def http(tmp_path, edit_families):  # noqa: F811
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    engine = Engine(EngineConfig(device="cpu", dtype="float32"), models=FakeModels())
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as client:
        yield client


def region() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.zeros((H, W, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = xx * 2, yy * 3, 90, 255
    return image


def selection() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 30:70] = 255
    return mask


def reference_part(width: int = 40, height: int = 24) -> tuple[str, bytes, str]:
    image = np.full((height, width, 4), 255, np.uint8)
    image[..., 1] = 0
    return png_part(image, "reference.png")


def edit_params(**changes: object) -> dict:
    values: dict = {"mode": "edit", "model": "edit-test", "width": W, "height": H}
    return job_params(**{**values, "prompt": "red", **changes})


def refusal(http, params: dict, **parts) -> dict:
    response = http.post(
        "/v1/jobs", files={"params": (None, _json(params), "application/json"), **parts}
    )
    assert response.status_code == 422, response.text
    return response.json()["error"]


def _json(params: dict) -> str:
    import json

    return json.dumps(params)


def test_models_list_edit_and_layers_capabilities(http) -> None:
    checkpoints = {
        c["name"]: c["capabilities"] for c in http.get("/v1/models").json()["checkpoints"]
    }
    assert checkpoints["edit-test"]["edit"] == {"max_references": 1, "live": True}
    assert (
        "edit" in checkpoints["edit-test"]["modes"] and checkpoints["edit-test"]["layers"] is None
    )
    assert checkpoints["layers-test"]["modes"] == ["layers"]
    assert checkpoints["layers-test"]["layers"] == {"min": 2, "max": 5, "default": 3}
    assert checkpoints["plain-test"]["edit"] is None
    assert {"edit", "layers"} <= set(http.get("/v1/health").json()["capabilities"])


def test_edit_of_a_selection_with_a_reference_is_one_layer_at_the_selection(http) -> None:
    params = edit_params(controls=[{"type": "reference", "image": "control_0"}])
    parts = {
        "image": raw_bgra(region()),
        "mask": gray_part(selection()),
        "control_0": reference_part(),
    }
    info = wait_job(http, submit(http, params, **parts)["id"])
    assert info["state"] == "done", info
    (result,) = info["results"]
    assert (result["x"], result["y"], result["width"], result["height"]) == (30, 10, 40, 30)
    assert result["group"] is None and result["layer_index"] is None
    pixels = decode_raw_result(http.get(result["raw_url"]))
    assert pixels.shape == (30, 40, 4) and (pixels[4:-4, 4:-4, 3] == 255).all()


def test_layers_come_back_as_one_group_bottom_first(http) -> None:
    params = job_params(mode="layers", model="layers-test", width=W, height=H, layers=4)
    info = wait_job(http, submit(http, params, image=png_part(region()))["id"])
    assert info["state"] == "done", info
    results = info["results"]
    assert [r["layer_index"] for r in results] == [0, 1, 2, 3] == [r["index"] for r in results]
    assert {r["group"] for r in results} == {info["id"]}
    assert {r["composite_error"] for r in results} == {0.0}
    canvas = np.zeros((H, W, 3), np.float32)
    for result in results:
        layer = decode_raw_result(http.get(result["raw_url"])).astype(np.float32)
        alpha = layer[..., 3:4] / 255
        canvas = layer[..., :3] * alpha + canvas * (1 - alpha)
    assert np.abs(canvas - region()[..., :3]).mean() < 3


def test_edit_refusals_at_submit(http) -> None:
    image = {"image": raw_bgra(region())}
    error = refusal(http, edit_params(model="plain-test"), **image)
    assert error["field"] == "model" and "edit-test" in error["message"]
    two = [{"type": "reference", "image": "control_0"}, {"type": "reference", "image": "control_1"}]
    error = refusal(
        http,
        edit_params(controls=two),
        **image,
        control_0=reference_part(),
        control_1=reference_part(),
    )
    assert error["field"] == "controls" and "at most 1" in error["message"]
    canny = [{"type": "canny", "image": "control_0"}]
    error = refusal(http, edit_params(controls=canny), **image, control_0=raw_bgra(region()))
    assert error["field"] == "controls[0].type"


def test_layers_refusals_at_submit(http) -> None:
    image = {"image": raw_bgra(region())}
    base = job_params(mode="layers", model="layers-test", width=W, height=H)
    assert refusal(http, {**base, "layers": 9}, **image)["field"] == "layers"
    assert refusal(http, {**base, "layers": 8}, **image)["field"] == "layers"  # family: 2..5
    error = refusal(http, {**base, "model": "edit-test"}, **image)
    assert error["field"] == "model" and "layers-test" in error["message"]
    txt = job_params(model="plain-test", layers=3)
    assert refusal(http, txt)["field"] == "layers"


def test_a_live_frame_can_be_an_edit_on_a_live_edit_model(http) -> None:
    params = {"prompt": "invert", "model": "edit-test", "width": W, "height": H, "steps": 2}
    files = {"image": raw_bgra(region())}
    response = http.post(
        "/v1/live/doc/frames",
        files={"params": (None, _json({**params, "edit": True}), "application/json"), **files},
    )
    assert response.status_code == 200, response.text
    frame = decode_raw_result(response)
    assert frame.shape == (H, W, 4)
    assert np.abs(frame[..., :3].astype(int) - (255 - region()[..., :3].astype(int))).mean() < 3
    refused = http.post(
        "/v1/live/doc/frames",
        files={
            "params": (
                None,
                _json({**params, "model": "plain-test", "edit": True}),
                "application/json",
            ),
            **files,
        },
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "edit" and "edit-test" in error["message"]
