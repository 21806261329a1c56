"""Every mode end to end over real HTTP (FakeEngine in-process): submit, follow, fetch, disk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .harness import (
    decode_raw_result,
    gray_part,
    job_params,
    png_part,
    raw_bgra,
    rgba_image,
    submit,
    wait_job,
)


def _fetch_results(client, info):
    images = []
    for result in info["results"]:
        raw = client.get(result["raw_url"])
        assert raw.status_code == 200
        assert raw.headers["content-type"] == "image/x-raw-bgra8"
        pixels = decode_raw_result(raw)
        assert pixels.shape == (result["height"], result["width"], 4)
        png = client.get(result["url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as img:
            assert "parameters" in img.text and f"Seed: {result['seed']}" in img.text["parameters"]
            assert np.array_equal(np.asarray(img.convert("RGBA")), pixels)
        assert Path(result["file"]).read_bytes() == png.content
        images.append(pixels)
    return images


def test_txt2img_batch_seeds_results_and_files(client, server):
    created = submit(client, job_params(seed=1234, batch=3))
    assert created["state"] == "queued"
    info = wait_job(client, created["id"])
    assert info["state"] == "done", info
    assert [r["seed"] for r in info["results"]] == [1234, 1235, 1236]
    images = _fetch_results(client, info)
    assert not np.array_equal(images[0], images[1])
    files = sorted(Path(server.settings.output_dir).glob("*.png"))
    assert len(files) == 3
    assert all(created["id"] in f.name for f in files)
    assert f"_{created['id']}_0_1234.png" in files[0].name
    assert not list(Path(server.settings.output_dir).glob(".partial-*"))


def test_random_seed_is_resolved(client):
    info = wait_job(client, submit(client, job_params())["id"])
    assert 0 <= info["results"][0]["seed"] < 2**32


def test_img2img_uses_the_image(client):
    source = rgba_image(64, 64, seed=3)
    params = job_params(mode="img2img", strength=0.0, seed=5)
    info = wait_job(client, submit(client, params, image=raw_bgra(source))["id"])
    assert info["state"] == "done", info
    (pixels,) = _fetch_results(client, info)
    # strength 0 keeps the image: proves the BGRA part reached the engine as RGBA.
    assert np.array_equal(pixels[:, :, :3], source[:, :, :3])


def test_img2img_png_part(client):
    source = rgba_image(64, 64, seed=4)
    params = job_params(mode="img2img", strength=0.0)
    info = wait_job(client, submit(client, params, image=png_part(source))["id"])
    (pixels,) = _fetch_results(client, info)
    assert np.array_equal(pixels[:, :, :3], source[:, :, :3])


def test_inpaint_result_offset_within_region(client):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:40, 8:24] = 255
    params = job_params(mode="inpaint", model="tiny-inpaint", x=100, y=200)
    info = wait_job(
        client,
        submit(client, params, image=raw_bgra(rgba_image(64, 64)), mask=gray_part(mask))["id"],
    )
    assert info["state"] == "done", info
    result = info["results"][0]
    assert (result["x"], result["y"], result["width"], result["height"]) == (8, 16, 16, 24)
    (pixels,) = _fetch_results(client, info)
    assert (pixels[:, :, 3] == 255).all()


def test_outpaint_with_png_mask(client):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 48:] = 255
    params = job_params(mode="outpaint")
    parts = {"image": raw_bgra(rgba_image(64, 64)), "mask": png_part(mask, "mask.png")}
    info = wait_job(client, submit(client, params, **parts)["id"])
    assert info["state"] == "done", info
    assert info["results"][0]["x"] == 48 and info["results"][0]["width"] == 16


def test_controlnet_and_lora(client):
    params = job_params(
        controls=[{"type": "canny", "image": "control_0", "model": "tiny-canny"}],
        loras=[{"name": "film", "weight": 0.5}],
    )
    info = wait_job(client, submit(client, params, control_0=png_part(rgba_image(64, 64)))["id"])
    assert info["state"] == "done", info


def test_preview_and_progress_fields(client):
    job_id = submit(client, job_params(steps=3))["id"]
    info = wait_job(client, job_id)
    assert (info["step"], info["total_steps"]) == (3, 3)
    assert info["preview_url"] == f"/v1/jobs/{job_id}/preview.png"
    preview = client.get(info["preview_url"])
    assert preview.status_code == 200
    with Image.open(io.BytesIO(preview.content)) as img:
        assert img.size == (8, 8)


def test_preview_404_before_any_step(client, fake_engine):
    fake_engine.step_delay = 0.3
    first = submit(client, job_params(steps=2))["id"]
    second = submit(client, job_params(steps=2))["id"]
    response = client.get(f"/v1/jobs/{second}/preview.png")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    client.delete(f"/v1/jobs/{first}")
    client.delete(f"/v1/jobs/{second}")


def test_preprocess_returns_control_map(client):
    image = np.zeros((32, 48, 4), dtype=np.uint8)
    image[:, 24:, :3] = 255
    image[:, :, 3] = 255
    files = {
        "params": (None, '{"type": "canny", "width": 48, "height": 32}', "application/json"),
        "image": raw_bgra(image),
    }
    response = client.post("/v1/preprocess", files=files)
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as img:
        control = np.asarray(img.convert("RGBA"))
    assert control.shape == (32, 48, 4)
    assert (control[:, 24, 0] == 255).all() and (control[:, 10, 0] == 0).all()


def test_health_and_models(client):
    health = client.get("/v1/health").json()
    assert health["protocol"] == 1 and health["ready"] and health["status"] == "ok"
    assert {"txt2img", "inpaint", "raw-images", "sse", "preprocess"} <= set(health["capabilities"])
    models = client.get("/v1/models").json()
    assert [c["name"] for c in models["checkpoints"]][:2] == ["tiny", "tiny-inpaint"]
    assert models["controlnets"][0]["type"] == "canny"
    assert models["loras"][0]["name"] == "film"
    assert "euler" in models["samplers"] and "canny" in models["preprocessors"]
