"""The hand-written corpus of bad requests (the image cases are in ``corpus_images``).

``status`` is the exact 4xx expected, or None for 'any 4xx'. Built from functions so that the
large bodies (100k-character prompts, oversized JSON, PNG bombs) exist only while a test runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from api.harness import job_params, raw_bgra

from .corpus_images import RGBA, image_cases, img2img, png_bomb, post_job, valid_png_cases

__all__ = ["RGBA", "bad_job_cases", "other_route_cases", "valid_png_cases"]


def multipart_raw(body: bytes, boundary: str = "b") -> dict:
    return {
        "content": body,
        "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    }


def nested_json(depth: int) -> str:
    return '{"mode":"txt2img","width":64,"height":64,"controls":' + "[" * depth + "]" * depth + "}"


def bad_job_cases() -> Iterator[tuple[str, dict, int | None, str | None]]:
    """(name, httpx kwargs for POST /v1/jobs, expected status or None, expected field)."""
    long_text = "fox " * 25_000  # 100k characters
    # --- sizes ---------------------------------------------------------------------------
    yield "size 0x0", post_job(job_params(width=0, height=0)), 422, "width"
    yield "size 30000x30000", post_job(job_params(width=30000, height=30000)), 422, "width"
    yield "size negative", post_job(job_params(width=-64)), 422, "width"
    yield "size float", post_job(job_params(width=64.5)), 422, "width"
    yield "size 1e300", post_job('{"mode":"txt2img","width":1e300,"height":64}'), 422, "width"
    yield "size huge int", post_job(job_params(width=10**40)), 422, "width"
    yield "size bool", post_job(job_params(width=True)), 422, "width"
    # --- numbers -------------------------------------------------------------------------
    yield (
        "NaN cfg",
        post_job('{"mode":"txt2img","width":64,"height":64,"cfg_scale":NaN}'),
        422,
        "cfg_scale",
    )
    yield (
        "-Infinity strength",
        post_job('{"mode":"txt2img","width":64,"height":64,"strength":-Infinity}'),
        422,
        "strength",
    )
    yield "NaN string strength", post_job(job_params(strength="NaN")), 422, "strength"
    yield "negative seed", post_job(job_params(seed=-5)), 422, "seed"
    yield "huge seed", post_job(job_params(seed=10**30)), 422, "seed"
    yield "steps 1e9", post_job(job_params(steps=10**9)), 422, "steps"
    yield "steps 2.5", post_job(job_params(steps=2.5)), 422, "steps"
    yield "batch 0", post_job(job_params(batch=0)), 422, "batch"
    yield "batch 1000", post_job(job_params(batch=1000)), 422, "batch"
    yield "cfg -1", post_job(job_params(cfg_scale=-1)), 422, "cfg_scale"
    yield "x 1e30", post_job(job_params(x=10**30)), 422, "x"
    yield (
        "lora weight NaN",
        post_job(
            '{"mode":"txt2img","width":64,"height":64,"loras":[{"name":"film","weight":NaN}]}'
        ),
        422,
        "loras[0].weight",
    )
    yield "inpaint grow -1", post_job(job_params(inpaint={"grow": -1})), 422, "inpaint.grow"
    # --- enums and shapes ----------------------------------------------------------------
    yield "unknown mode", post_job(job_params(mode="paint")), 422, "mode"
    yield "mode null", post_job(job_params(mode=None)), 422, "mode"
    yield "unknown sampler", post_job(job_params(sampler="warp_drive")), 422, "sampler"
    yield "unknown fill", post_job(job_params(inpaint={"fill": "lava"})), 422, "inpaint.fill"
    yield (
        "unknown control type",
        post_job(
            job_params(controls=[{"type": "xray", "image": "control_0"}]), control_0=raw_bgra(RGBA)
        ),
        422,
        "controls[0].type",
    )
    yield (
        "control part name injection",
        post_job(job_params(controls=[{"type": "canny", "image": "../params"}])),
        422,
        "controls[0].image",
    )
    yield "controls not a list", post_job(job_params(controls={"type": "canny"})), 422, "controls"
    yield (
        "too many controls",
        post_job(
            job_params(controls=[{"type": "canny", "image": f"control_{i}"} for i in range(20)])
        ),
        422,
        "controls",
    )
    yield "protocol 99", post_job(job_params(protocol=99)), 422, "protocol"
    yield "extra field", post_job(job_params(__proto__={"admin": True})), 422, "__proto__"
    # --- text ----------------------------------------------------------------------------
    yield "prompt 100k chars", post_job(job_params(prompt=long_text)), 422, "prompt"
    yield (
        "negative prompt 100k chars",
        post_job(job_params(negative_prompt=long_text)),
        422,
        "negative_prompt",
    )
    yield "prompt not a string", post_job(job_params(prompt=["a", "b"])), 422, "prompt"
    yield (
        "params not utf-8",
        post_job(b'{"mode":"txt2img","prompt":"\xff\xfe","width":64,"height":64}'),
        422,
        None,
    )
    yield "params empty", post_job(b""), 422, None
    yield "params JSON null", post_job("null"), 422, None
    yield "params nested 100k deep", post_job(nested_json(100_000)), 422, None
    yield (
        "params 3 MB of JSON",
        post_job(json.dumps({**job_params(), "pad": "x" * (3 << 20)})),
        422,
        None,
    )
    # --- names that look like paths ------------------------------------------------------
    for name in (
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "tiny\x00.safetensors",
        "C:\\Windows\\x",
        "\\\\server\\share\\m",
        "~root/.ssh/id_rsa",
        "models/../../x",
        "tiny/../tiny",
        "file:///etc/passwd",
    ):
        yield f"model {name!r}", post_job(job_params(model=name)), None, "model"
        yield f"lora {name!r}", post_job(job_params(loras=[{"name": name}])), None, "loras[0].name"
    yield (
        "controlnet '../cn'",
        post_job(
            job_params(controls=[{"type": "canny", "image": "control_0", "model": "../cn"}]),
            control_0=raw_bgra(RGBA),
        ),
        422,
        "controls[0].model",
    )
    yield "model name 10k chars", post_job(job_params(model="m" * 10_000)), 422, "model"
    yield from image_cases()
    # --- missing parts and broken bodies -------------------------------------------------
    yield "no params part", {"files": {"image": raw_bgra(RGBA)}}, 422, "params"
    yield "img2img without image", post_job(img2img()), 422, "image"
    yield (
        "inpaint without mask",
        post_job(job_params(mode="inpaint"), image=raw_bgra(RGBA)),
        422,
        "mask",
    )
    yield (
        "control part missing",
        post_job(job_params(controls=[{"type": "canny", "image": "control_3"}])),
        422,
        "controls[0].image",
    )
    yield "unexpected part", post_job(job_params(), secrets=raw_bgra(RGBA)), 422, "secrets"
    yield (
        "empty body",
        {"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=b"}},
        None,
        None,
    )
    yield (
        "no boundary",
        {"content": b"x", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        None,
    )
    yield "json body", {"json": job_params()}, 415, None
    yield "urlencoded body", {"data": {"params": json.dumps(job_params())}}, 415, None
    yield "garbage multipart", multipart_raw(b"--b\r\n\x00\x01\x02garbage"), None, None
    yield (
        "part without name",
        multipart_raw(b"--b\r\nContent-Disposition: form-data\r\n\r\n{}\r\n--b--\r\n"),
        400,
        None,
    )
    yield (
        "part name 10k chars",
        multipart_raw(
            b'--b\r\nContent-Disposition: form-data; name="'
            + b"p" * 10_000
            + b'"\r\n\r\n{}\r\n--b--\r\n'
        ),
        400,
        None,
    )
    yield (
        "200 parts",
        multipart_raw(
            b"".join(
                b'--b\r\nContent-Disposition: form-data; name="p%d"\r\n\r\nx\r\n' % i
                for i in range(200)
            )
            + b"--b--\r\n"
        ),
        400,
        None,
    )


def other_route_cases(job_id: str) -> Iterator[tuple[str, str, str, dict, int | None]]:
    """(name, method, path, httpx kwargs, status) for every other route."""
    pre = '{"type": "canny", "width": 64, "height": 64}'
    yield "job id 10k chars", "GET", "/v1/jobs/" + "a" * 10_000, {}, 404
    yield "job id traversal", "GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", {}, 404
    yield "job id NUL", "GET", "/v1/jobs/abc%00def", {}, 404
    yield "cancel unknown job", "DELETE", "/v1/jobs/0123456789abcdef", {}, 404
    yield "events unknown job", "GET", "/v1/jobs/nope/events", {}, 404
    yield "result index huge", "GET", f"/v1/jobs/{job_id}/results/{10**30}.png", {}, None
    yield "result index negative", "GET", f"/v1/jobs/{job_id}/results/-1.png", {}, 404
    yield "result index text", "GET", f"/v1/jobs/{job_id}/results/abc.raw", {}, None
    yield "result traversal", "GET", f"/v1/jobs/{job_id}/results/..%2F..%2Fsettings.json", {}, None
    yield "preview of unknown job", "GET", "/v1/jobs/nope/preview.png", {}, 404
    yield "static listing", "GET", "/static/", {}, 404
    yield "outputs listing", "GET", "/outputs/", {}, 404
    yield "docs", "GET", "/docs", {}, 404
    yield "root", "GET", "/", {}, 404
    yield "dotdot path", "GET", "/v1/../../etc/passwd", {}, 404
    yield "TRACE method", "TRACE", "/v1/health", {}, 405
    yield (
        "preprocess without image",
        "POST",
        "/v1/preprocess",
        {"files": {"params": (None, pre)}},
        422,
    )
    yield (
        "preprocess 0x0",
        "POST",
        "/v1/preprocess",
        {
            "files": {
                "params": (None, '{"type":"canny","width":0,"height":0}'),
                "image": raw_bgra(RGBA),
            }
        },
        422,
    )
    yield (
        "preprocess unknown type",
        "POST",
        "/v1/preprocess",
        {
            "files": {
                "params": (None, '{"type":"xray","width":64,"height":64}'),
                "image": raw_bgra(RGBA),
            }
        },
        422,
    )
    yield (
        "preprocess png bomb",
        "POST",
        "/v1/preprocess",
        {"files": {"params": (None, pre), "image": ("b.png", png_bomb(30000, 30000), "image/png")}},
        413,
    )
    yield (
        "live bad session",
        "POST",
        "/v1/live/..%2F..%2Fx/frames",
        {"files": {"params": (None, "{}")}},
        None,
    )
    yield "live session 1000 chars", "GET", "/v1/live/" + "s" * 1000, {}, None
    yield (
        "live frame without params",
        "POST",
        "/v1/live/doc1/frames",
        {"files": {"image": raw_bgra(RGBA)}},
        422,
    )
    yield (
        "live frame NaN strength",
        "POST",
        "/v1/live/doc1/frames",
        {
            "files": {
                "params": (None, '{"width":64,"height":64,"strength":NaN}'),
                "image": raw_bgra(RGBA),
            }
        },
        422,
    )
