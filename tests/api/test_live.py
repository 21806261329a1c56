"""Live painting over real HTTP (FakeEngine): frames, latest-wins mailbox, priority, limits."""

from __future__ import annotations

import gc
import io
import threading
import time
import tracemalloc

import httpx
import numpy as np
from PIL import Image

from backend.protocol import PNG, RAW_BGRA

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import decode_raw_result, job_files, job_params, raw_bgra, rgba_image, serve_app

SIZE = 64


def live_params(**overrides) -> dict:
    params = {"prompt": "a red fox", "width": SIZE, "height": SIZE, "steps": 2, "strength": 0.5}
    params.update(overrides)
    return params


def post_frame(
    client: httpx.Client, session: str = "doc-1", image=None, headers=None, **params
) -> httpx.Response:
    image = rgba_image(SIZE, SIZE) if image is None else image
    files = job_files(live_params(**params), image=raw_bgra(image))
    return client.post(f"/v1/live/{session}/frames", files=files, headers=headers or {})


def test_health_and_openapi_announce_live(client):
    assert "live" in client.get("/v1/health").json()["capabilities"]
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"]["/v1/live/{session}/frames"]
    assert "delete" in schema["paths"]["/v1/live/{session}"]
    assert "strength" in schema["components"]["schemas"]["LiveParams"]["properties"]


def test_frame_comes_back_raw_with_its_placement_and_a_stable_seed(client):
    image = rgba_image(SIZE, SIZE, seed=3)
    first = post_frame(client, image=image)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == RAW_BGRA
    pixels = decode_raw_result(first)
    assert pixels.shape == (SIZE, SIZE, 4) and (pixels[..., 3] == 255).all()
    assert (first.headers["X-Offset-X"], first.headers["X-Offset-Y"]) == ("0", "0")
    # img2img at 0.5: half the input, half the seed's colour (the fake engine's rule).
    assert np.abs(pixels[..., :3].astype(int) - image[..., :3]).mean() > 5
    seeds, frames = set(), []
    for _ in range(3):
        again = post_frame(client, image=image)
        seeds.add(again.headers["X-Seed"])
        frames.append(again.headers["X-Frame"])
        assert again.content == first.content  # same canvas + same seed = same picture
    assert seeds == {first.headers["X-Seed"]}
    assert frames == ["2", "3", "4"]
    changed = post_frame(client, image=rgba_image(SIZE, SIZE, seed=4))
    assert changed.headers["X-Seed"] == first.headers["X-Seed"]
    assert changed.content != first.content


def test_explicit_seed_becomes_the_sessions_seed_and_sessions_are_separate(client):
    assert post_frame(client, "a", seed=7).headers["X-Seed"] == "7"
    assert post_frame(client, "a").headers["X-Seed"] == "7"
    assert post_frame(client, "b", seed=9).headers["X-Seed"] == "9"
    assert client.get("/v1/live/a").json()["frames"] == 2


def test_png_when_asked_and_presets_fill_sampling(client):
    response = post_frame(client, headers={"Accept": PNG}, steps=None)
    assert response.status_code == 200 and response.headers["content-type"] == PNG
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.size == (SIZE, SIZE)
    # No few-step model or LoRA: the 'standard' preset.
    assert response.headers["X-Sampler"] == "dpmpp_2m_karras"
    assert response.headers["X-Steps"] == "8" and response.headers["X-Cfg-Scale"] == "5"


def test_bad_frames_are_refused_naming_the_field(client):
    no_image = client.post("/v1/live/doc/frames", files=job_files(live_params()))
    assert no_image.status_code == 422 and no_image.json()["error"]["field"] == "image"
    bad_session = post_frame(client, session="..%2Fescape")
    assert bad_session.status_code in (404, 422)
    mask = np.full((SIZE, SIZE), 255, np.uint8)
    files = job_files(
        live_params(), image=raw_bgra(rgba_image(SIZE, SIZE)), mask=("m", mask.tobytes(), "x")
    )
    with_mask = client.post("/v1/live/doc/frames", files=files)
    assert with_mask.status_code == 422 and with_mask.json()["error"]["field"] == "mask"
    zero = post_frame(client, strength=0.0)
    assert zero.status_code == 422 and zero.json()["error"]["field"] == "strength"
    missing = post_frame(client, model="no-such-model")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "model"
    assert client.get("/v1/live/doc").status_code == 404  # nothing was started


def test_close_ends_the_session(client):
    post_frame(client, "gone")
    info = client.delete("/v1/live/gone")
    assert info.status_code == 200 and info.json()["frames"] == 1
    assert client.get("/v1/live/gone").status_code == 404
    assert client.delete("/v1/live/gone").status_code == 404


def test_recording_writes_each_frame(tmp_path):
    with serve_app(make_settings(tmp_path), FakeEngine()) as server, server.client() as http:
        first = post_frame(http, "rec", record=True)
        post_frame(http, "rec", record=True)
        post_frame(http, "rec")  # not recorded
        info = http.get("/v1/live/rec").json()
    folder = tmp_path / "outputs" / "live" / "rec"
    assert info["record_dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["000001.png", "000002.png"]
    with Image.open(folder / "000001.png") as img:
        saved = np.asarray(img.convert("RGBA"))
    assert np.array_equal(saved, decode_raw_result(first))


def _in_thread(fn, results: list, key: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append((key, fn())), daemon=True)
    thread.start()
    return thread


class OrderedEngine(FakeEngine):
    """FakeEngine that records the order in which generations start (mode, prompt)."""

    def __init__(self, step_delay: float) -> None:
        super().__init__(step_delay=step_delay)
        self.order: list[tuple[str, str]] = []

    def generate(self, request, on_progress=None, cancel=None):
        self.order.append((request.mode, request.prompt))
        return super().generate(request, on_progress, cancel)


def test_stale_frame_is_superseded_and_live_jumps_the_job_queue(tmp_path):
    engine = OrderedEngine(step_delay=0.05)
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as http:
        # 1. Occupy the worker with a job (30 x 50 ms), queue another one behind it.
        running = http.post("/v1/jobs", files=job_files(job_params(prompt="running", steps=30)))
        assert engine.started.wait(10)
        queued = http.post("/v1/jobs", files=job_files(job_params(prompt="queued", steps=2)))
        # 2. Two frames of one session while the worker is busy: the first must lose.
        results: list = []
        with server.client() as a, server.client() as b:
            first = _in_thread(lambda: post_frame(a, "doc", prompt="first"), results, "first")
            deadline = time.monotonic() + 10
            while http.get("/v1/live/doc").status_code == 404:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            second = _in_thread(lambda: post_frame(b, "doc", prompt="second"), results, "second")
            first.join(10)
            assert [key for key, _ in results] == ["first"], "the stale frame was not answered"
            second.join(10)
        answers = dict(results)
        assert answers["first"].status_code == 409
        assert answers["first"].json()["error"]["code"] == "superseded"
        assert answers["second"].status_code == 200
        # 3. The stale frame never ran; the live frame ran before the queued job.
        queued_id = queued.json()["id"]
        deadline = time.monotonic() + 10
        while http.get(f"/v1/jobs/{queued_id}").json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert engine.order == [
            ("txt2img", "running"),
            ("img2img", "second"),
            ("txt2img", "queued"),
        ]
        assert http.get("/v1/live/doc").json()["superseded"] == 1
        assert running.status_code == 202


def test_session_limit_refuses_one_more_until_one_closes(tmp_path):
    engine = FakeEngine(step_delay=0.05)
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as http:
        live = server.app.state.live
        for index in range(live.max_sessions):
            assert post_frame(http, f"s{index}", steps=1).status_code == 200
        refused = post_frame(http, "one-too-many", steps=1)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "live_sessions_full"
        http.delete("/v1/live/s0")
        assert post_frame(http, "one-too-many", steps=1).status_code == 200


def test_no_memory_growth_over_500_frames(tmp_path):
    engine = FakeEngine()
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as http:
        image = rgba_image(SIZE, SIZE)
        body = job_files(live_params(), image=raw_bgra(image))

        def frames(count: int) -> None:
            for _ in range(count):
                response = http.post("/v1/live/soak/frames", files=body)
                assert response.status_code == 200

        frames(50)  # warm up caches and pools
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            frames(500)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert http.get("/v1/live/soak").json()["frames"] == 550
    # One frame is 16 KiB in and out; 500 kept frames would be > 16 MB.
    assert grown < 1_000_000, f"traced memory grew by {grown} bytes over 500 frames"
