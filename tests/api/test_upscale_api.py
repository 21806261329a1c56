"""``mode: "upscale"`` over HTTP against the real server process (tiny model, CPU): the
upscalers listing (a tiny Real-ESRGAN Compact built in code, and a pickle the safe loader
refuses), exact result sizes, progress over every tile step, and the 422s checked at submit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from backend.engine.tiles import default_overlap, tile_layout

from .harness import (
    decode_raw_result,
    gray_part,
    raw_bgra,
    read_events,
    rgba_image,
    serve_process,
    submit,
    wait_job,
)

TOKEN = "upscale-token-1"


def compact_weights(scale: int = 2, features: int = 8) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, features, 3, 1, 1), nn.PReLU(features)]
    layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(features)]
    layers.append(nn.Conv2d(features, 3 * scale * scale, 3, 1, 1))
    state = nn.Sequential(*layers).state_dict()
    return {f"body.{key}": value.contiguous() for key, value in state.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("upscale-api")
    (root / "models" / "upscale").mkdir(parents=True)
    save_file(compact_weights(), str(root / "models" / "upscale" / "2x-Tiny.safetensors"))
    torch.save({"model": nn.Linear(2, 2)}, root / "models" / "upscale" / "pickled.pth")
    config = root / "settings.json"
    config.write_text(json.dumps({"tiny_dir": str(root / "tiny"), "output_dir": str(root / "o")}))
    args = ["--model", "tiny", "--device", "cpu", "--config", str(config), "--preload"]
    args += ["--models-dir", str(root / "models")]
    with serve_process(args, {"DIFFUSION_LAYERS_TOKEN": TOKEN}) as base:
        import httpx

        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as http:
            for _ in range(1200):
                if http.get("/v1/health").json()["status"] != "loading":
                    break
                __import__("time").sleep(0.1)
            yield http


def test_upscalers_are_listed_and_health_says_upscale(server) -> None:
    health = server.get("/v1/health").json()
    assert {"upscale", "hires"} <= set(health["capabilities"])
    listed = {u["name"]: u for u in server.get("/v1/models").json()["upscalers"]}
    assert listed["2x-Tiny.safetensors"]["scale"] == 2
    assert listed["2x-Tiny.safetensors"]["problem"] is None
    assert "--allow-pickle" in listed["pickled.pth"]["problem"]


def test_upscale_with_a_model_has_the_exact_size(server) -> None:
    upscale = {"factor": 1.5, "model": "2x-Tiny.safetensors"}
    params = {"mode": "upscale", "width": 91, "height": 57, "upscale": upscale}
    image = rgba_image(91, 57)
    image[:, :30, 3] = 0  # transparent part stays transparent
    info = wait_job(server, submit(server, params, image=raw_bgra(image))["id"])
    assert info["state"] == "done", info
    [result] = info["results"]
    assert (result["x"], result["y"], result["width"], result["height"]) == (0, 0, 136, 86)
    raw = decode_raw_result(server.get(result["raw_url"]))
    assert raw.shape == (86, 136, 4)
    assert raw[:, :40, 3].max() == 0 and raw[:, 50:, 3].min() == 255


def test_refine_reports_every_tile_step(server) -> None:
    params = {
        "mode": "upscale",
        "prompt": "detail",
        "strength": 0.5,
        "steps": 2,
        "seed": 5,
        "width": 200,
        "height": 152,
        "upscale": {"factor": 2.0, "refine": True, "tile_size": 256},
    }
    job = submit(server, params, image=raw_bgra(rgba_image(200, 152)))
    events = read_events(server, job["id"])
    info = wait_job(server, job["id"])
    assert info["state"] == "done", info["error"]
    assert (info["results"][0]["width"], info["results"][0]["height"]) == (400, 304)
    progress = [data for name, data in events if name == "progress"]
    steps = [data["step"] for data in progress]
    assert steps == sorted(steps) and steps[-1] == info["total_steps"]
    tiles = tile_layout(400, 304, 256, default_overlap(256))
    assert len(tiles) > 1 and info["total_steps"] == 2 * len(tiles)  # every step of every tile


@pytest.mark.parametrize(
    ("upscale", "with_mask", "field"),
    [
        ({"factor": 2.0, "refine": True}, True, "upscale.factor"),
        ({"factor": 2.0, "model": "pickled.pth"}, False, "upscale.model"),
        ({"factor": 2.0, "model": "missing.pth"}, False, "upscale.model"),
        ({"factor": 4.5}, False, "upscale.factor"),
    ],
)
def test_bad_upscale_requests_are_refused_at_submit(server, upscale, with_mask, field) -> None:
    parts = {"image": raw_bgra(rgba_image(64, 48))}
    if with_mask:
        parts["mask"] = gray_part(np.full((48, 64), 255, np.uint8))
    params = {"mode": "upscale", "width": 64, "height": 48, "strength": 0.5, "upscale": upscale}
    body = {"params": (None, json.dumps(params), "application/json"), **parts}
    response = server.post("/v1/jobs", files=body)
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]["field"] == field
