"""Live painting on FLUX.2 klein (a family whose edit is fast enough for live: its
``capabilities.edit.live``): plain img2img frames and edit frames over real HTTP, with the
tiny klein set built in code, loaded through the real inventory and loader (CPU, 64 px)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import make_settings
from .harness import decode_raw_result, raw_bgra, serve_app

pytest.importorskip("diffusers")
SIDE = 64


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from backend.engine.engine import Engine
    from backend.engine.families.tiny_flux2 import write_tiny_flux2_klein
    from backend.engine.types import EngineConfig

    root = tmp_path_factory.mktemp("klein-live")
    name = write_tiny_flux2_klein(root / "models")
    config = EngineConfig(models_dir=str(root / "models"), device="cpu", dtype="float32")
    engine = Engine(config)
    with serve_app(make_settings(root), engine) as server, server.client(timeout=120) as client:
        yield client, name


def region() -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    image = np.zeros((SIDE, SIDE, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = xx * 4, yy * 4, 120, 255
    return image


def frame(client, params: dict):
    files = {
        "params": (None, json.dumps(params), "application/json"),
        "image": raw_bgra(region()),
    }
    return client.post("/v1/live/doc/frames", files=files)


def test_klein_offers_live_edits(live) -> None:
    client, name = live
    checkpoints = client.get("/v1/models").json()["checkpoints"]
    capabilities = next(c["capabilities"] for c in checkpoints if c["name"] == name)
    assert capabilities["edit"]["live"] is True and capabilities["live"] is True


def test_live_img2img_and_edit_frames_on_klein(live) -> None:
    client, name = live
    base = {"prompt": "a red cup", "model": name, "width": SIDE, "height": SIDE, "steps": 2}
    plain = frame(client, {**base, "strength": 0.6, "cfg_scale": 1.0})
    assert plain.status_code == 200, plain.text
    assert decode_raw_result(plain).shape == (SIDE, SIDE, 4)
    edited = frame(client, {**base, "prompt": "make it blue", "edit": True, "cfg_scale": 1.0})
    assert edited.status_code == 200, edited.text
    pixels = decode_raw_result(edited)
    assert pixels.shape == (SIDE, SIDE, 4) and (pixels[..., 3] == 255).all()
    assert edited.headers["X-Seed"] == plain.headers["X-Seed"]  # one session, one seed
