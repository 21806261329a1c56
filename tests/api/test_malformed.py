"""Every malformed request gets a clear 4xx ErrorResponse; the server stays healthy after."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import (
    job_files,
    job_params,
    png_part,
    raw_bgra,
    rgba_image,
    serve_app,
    submit,
    wait_job,
)

RGBA = rgba_image(64, 64)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One server for the whole module: the cases share it, which also proves it survives."""
    settings = make_settings(tmp_path_factory.mktemp("malformed"))
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        yield http


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny file whose IHDR claims width x height: a decompression-bomb header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _png_bytes() -> bytes:
    return png_part(RGBA)[1]


CASES = {
    "bad json": ({"params": (None, "{not json", "application/json")}, 422, None),
    "params not an object": ({"params": (None, "[1, 2]", "application/json")}, 422, None),
    "missing params": ({"image": raw_bgra(RGBA)}, 422, "params"),
    "missing mode": (job_files({"width": 64, "height": 64}), 422, "mode"),
    "unknown field": (job_files(job_params(colour="red")), 422, "colour"),
    "unknown mode": (job_files(job_params(mode="paint")), 422, "mode"),
    "unknown control type": (
        job_files(job_params(controls=[{"type": "x", "image": "control_0"}])),
        422,
        "controls[0].type",
    ),
    "NaN strength": (
        job_files('{"mode":"txt2img","width":64,"height":64,"strength":NaN}'),
        422,
        "strength",
    ),
    "Infinity cfg": (
        job_files('{"mode":"txt2img","width":64,"height":64,"cfg_scale":Infinity}'),
        422,
        "cfg_scale",
    ),
    "string width": (job_files(job_params(width="64px")), 422, "width"),
    "negative steps": (job_files(job_params(steps=-1)), 422, "steps"),
    "seed too big": (job_files(job_params(seed=2**40)), 422, "seed"),
    "protocol 2": (job_files(job_params(protocol=2)), 422, "protocol"),
    "size mismatch raw": (
        job_files(job_params(mode="img2img"), image=raw_bgra(rgba_image(32, 64))),
        422,
        "image",
    ),
    "size mismatch png": (
        job_files(job_params(mode="img2img"), image=png_part(rgba_image(32, 32))),
        422,
        "image",
    ),
    "raw too short": (
        job_files(job_params(mode="img2img"), image=("i", b"\x00" * 100, "image/x-raw-bgra8")),
        422,
        "image",
    ),
    "corrupt png": (
        job_files(
            job_params(mode="img2img"), image=("i.png", b"\x89PNG\r\n\x1a\nrubbish", "image/png")
        ),
        422,
        "image",
    ),
    "truncated png": (
        job_files(job_params(mode="img2img"), image=("i.png", _png_bytes()[:-200], "image/png")),
        422,
        "image",
    ),
    "png bomb header": (
        job_files(
            job_params(mode="img2img"),
            image=("b.png", png_with_declared_size(100000, 100000), "image/png"),
        ),
        413,
        "image",
    ),
    "unknown image type": (
        job_files(job_params(mode="img2img"), image=("i.gif", b"GIF89a\x01", "image/gif")),
        415,
        "image",
    ),
    "truncated jpeg": (
        job_files(job_params(mode="img2img"), image=("i.jpg", b"\xff\xd8\xff", "image/jpeg")),
        422,
        "image",
    ),
    "octet-stream that is no image file": (
        job_files(
            job_params(mode="img2img"), image=("i", b"\x00" * 64, "application/octet-stream")
        ),
        415,
        "image",
    ),
    "unexpected part": (job_files(job_params(), extra=raw_bgra(RGBA)), 422, "extra"),
    "control part missing": (
        job_files(job_params(controls=[{"type": "canny", "image": "control_1"}])),
        422,
        "controls[0].image",
    ),
    "img2img without image": (job_files(job_params(mode="img2img")), 422, "image"),
    "inpaint without mask": (
        job_files(job_params(mode="inpaint"), image=raw_bgra(RGBA)),
        422,
        "mask",
    ),
    "unknown sampler": (job_files(job_params(sampler="magic")), 422, "sampler"),
    "size not multiple of 8": (job_files(job_params(width=63)), 422, "width"),
    "pixel limit": (job_files(job_params(width=8192, height=8192)), 413, "width"),
    "model ../x": (job_files(job_params(model="../x")), 422, "model"),
    "model /etc/passwd": (job_files(job_params(model="/etc/passwd")), 422, "model"),
    "model NUL": (job_files(job_params(model="tiny\x00.safetensors")), 422, "model"),
    "model windows path": (job_files(job_params(model="C:\\models\\x")), 422, "model"),
    "lora path": (job_files(job_params(loras=[{"name": "../../secret"}])), 422, "loras[0].name"),
    "controlnet path": (
        job_files(
            job_params(controls=[{"type": "canny", "image": "control_0", "model": "~/.ssh/id"}]),
            control_0=raw_bgra(RGBA),
        ),
        422,
        "controls[0].model",
    ),
    "unknown model": (job_files(job_params(model="nonexistent")), 404, "model"),
    "unknown lora": (job_files(job_params(loras=[{"name": "nope"}])), 404, "loras[0].name"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_job_is_4xx(client, name):
    files, status, field = CASES[name]
    response = client.post("/v1/jobs", files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    if field is not None:
        assert error["field"] == field, error


def test_not_multipart(client):
    response = client.post("/v1/jobs", json=job_params())
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_truncated_multipart_body(client):
    body = b'--xyz\r\nContent-Disposition: form-data; name="params"\r\n\r\n{"mode":'
    response = client.post(
        "/v1/jobs", content=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert 400 <= response.status_code < 500, response.text


def test_duplicate_part(client):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="params"\r\n\r\n{}\r\n'
        b'--b\r\nContent-Disposition: form-data; name="params"\r\n\r\n{}\r\n--b--\r\n'
    )
    response = client.post(
        "/v1/jobs", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "params"


def test_framework_errors_are_error_responses(client):
    not_found = client.get("/v1/nothing")
    assert not_found.status_code == 404 and not_found.json()["error"]["code"] == "not_found"
    wrong_method = client.put("/v1/health")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    bad_index = client.get("/v1/jobs/abc/results/x.png")
    assert bad_index.status_code in (404, 422) and "error" in bad_index.json()
    assert client.get("/").status_code == 404  # no index or directory listing
    assert client.get("/v1/").status_code == 404


def test_bad_preprocess_requests(client):
    params = '{"type": "canny", "width": 64, "height": 64}'
    cases = [
        ({"params": (None, params)}, 422),
        (
            {
                "params": (None, '{"type": "blur", "width": 64, "height": 64}'),
                "image": raw_bgra(RGBA),
            },
            422,
        ),
        ({"params": (None, params), "image": raw_bgra(rgba_image(8, 8))}, 422),
        (
            {
                "params": (None, '{"type": "depth", "width": 64, "height": 64}'),
                "image": raw_bgra(RGBA),
            },
            422,
        ),
    ]
    for files, status in cases:
        response = client.post("/v1/preprocess", files=files)
        assert response.status_code == status, response.text


def test_result_of_unknown_job_or_index(client):
    job_id = wait_job(client, submit(client, job_params())["id"])["id"]
    assert client.get(f"/v1/jobs/{job_id}/results/5.png").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/results/-1.raw").status_code == 404
    assert client.get("/v1/jobs/doesnotexist").status_code == 404


def test_server_healthy_and_next_job_succeeds_after_abuse(client):
    for name in CASES:
        client.post("/v1/jobs", files=CASES[name][0])
    assert client.get("/v1/health").json()["status"] == "ok"
    info = wait_job(client, submit(client, job_params(mode="img2img"), image=raw_bgra(RGBA))["id"])
    assert info["state"] == "done"
    assert np.asarray(info["results"][0]["width"]) == 64


def test_oversized_body_rejected_early_and_while_streaming(tmp_path):
    settings = make_settings(tmp_path, max_request_mb=1)
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        big = job_files(job_params(mode="img2img"), image=raw_bgra(rgba_image(1024, 1024)))
        response = http.post("/v1/jobs", files=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        def chunks():  # no Content-Length: counted while streaming
            yield b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n'
            for _ in range(40):
                yield b"\x00" * 65536

        streamed = http.post(
            "/v1/jobs",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
        assert http.get("/v1/health").status_code == 200
        assert wait_job(http, submit(http, job_params())["id"])["state"] == "done"
