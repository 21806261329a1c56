"""Item 1, the hand-written corpus: every bad request gets a clear 4xx; no 5xx, ever.

One server per engine (the fault-injecting fake and the real tiny model) takes the whole
corpus; afterwards it must still be healthy and the next valid job must succeed.
"""

from __future__ import annotations

import json

import httpx
import pytest
from api.fake_engine import FakeEngine
from api.harness import job_params, png_part, raw_bgra, rgba_image, serve_app, submit, wait_job

from .corpus import RGBA, bad_job_cases, other_route_cases, valid_png_cases
from .support import make_settings

TALLY = {"cases": 0, "4xx": 0, "5xx": 0}


@pytest.fixture(scope="module", params=["fake", "tiny"])
def server(request, tmp_path_factory):
    engine = FakeEngine() if request.param == "fake" else request.getfixturevalue("tiny_engine")
    # A pixel limit well under MAX_SIDE**2 so the limit itself is exercised.
    settings = make_settings(tmp_path_factory.mktemp("corpus"), max_image_pixels=1024 * 1024)
    with serve_app(settings, engine) as running:
        yield running


def assert_clear_4xx(response: httpx.Response, status: int | None, field: str | None, name: str):
    TALLY["cases"] += 1
    if response.status_code >= 500:
        TALLY["5xx"] += 1
    assert 400 <= response.status_code < 500, (
        f"{name}: {response.status_code} {response.text[:300]}"
    )
    TALLY["4xx"] += 1
    if status is not None:
        assert response.status_code == status, (
            f"{name}: {response.status_code} {response.text[:300]}"
        )
    error = response.json()["error"]
    assert error["code"] and error["message"], name
    assert len(error["message"]) < 500, f"{name}: message too long to show an artist"
    assert "Traceback" not in error["message"] and 'File "' not in error["message"], name
    if field is not None:
        assert error["field"] == field, f"{name}: {error}"


def test_every_bad_job_is_a_clear_4xx(server):
    with server.client(timeout=60) as http:
        for name, kwargs, status, field in bad_job_cases():
            response = http.post("/v1/jobs", **kwargs)
            assert_clear_4xx(response, status, field, name)
        assert http.get("/v1/health").json()["status"] == "ok"
        assert http.get("/v1/health").json()["queue_length"] == 0  # nothing bad got queued


def test_every_other_route_refuses_bad_input(server):
    with server.client(timeout=60) as http:
        job = wait_job(http, submit(http, job_params(seed=1))["id"], timeout=120)
        assert job["state"] == "done", job
        for name, method, path, kwargs, status in other_route_cases(job["id"]):
            response = http.request(method, path, **kwargs)
            assert_clear_4xx(response, status, None, name)


def test_unusual_but_valid_pngs_are_accepted(server):
    with server.client(timeout=60) as http:
        for name, data in valid_png_cases():
            params = job_params(mode="img2img", strength=0.5, seed=3)
            created = http.post(
                "/v1/jobs",
                files={
                    "params": (None, json.dumps(params)),
                    "image": ("i.png", data, "image/png"),
                },
            )
            assert created.status_code == 202, f"{name}: {created.text}"
            assert wait_job(http, created.json()["id"], timeout=120)["state"] == "done", name


def test_request_and_image_limits_are_configurable(tmp_path):
    settings = make_settings(tmp_path, max_request_mb=0.05, max_image_pixels=32 * 32)
    with serve_app(settings, FakeEngine()) as running, running.client() as http:
        too_many_pixels = http.post(
            "/v1/jobs", files={"params": (None, '{"mode":"txt2img","width":64,"height":64}')}
        )
        assert_clear_4xx(too_many_pixels, 413, "width", "pixel limit")
        big_body = http.post(
            "/v1/jobs",
            files={
                "params": (None, '{"mode":"img2img","width":32,"height":32}'),
                "image": raw_bgra(rgba_image(256, 256)),
            },
        )
        assert_clear_4xx(big_body, 413, None, "request limit")
        small = job_params(width=32, height=32)
        assert wait_job(http, submit(http, small)["id"])["state"] == "done"


def test_server_healthy_and_next_valid_job_succeeds(server):
    with server.client(timeout=60) as http:
        health = http.get("/v1/health").json()
        assert health["status"] == "ok" and health["ready"]
        params = job_params(mode="img2img", strength=0.5, seed=11)
        info = wait_job(http, submit(http, params, image=png_part(RGBA))["id"], timeout=120)
        assert info["state"] == "done" and info["results"][0]["width"] == 64
        raw = http.get(info["results"][0]["raw_url"])
        assert raw.status_code == 200 and len(raw.content) == 64 * 64 * 4
    print(f"\ncorpus tally so far: {TALLY}")
    assert TALLY["5xx"] == 0
