"""One spelling of ``field`` whichever layer refuses (issue 13, kind 10): ``loras[0].name``,
``controls[1].model``, ``inpaint.fill``; a missing field reads "width: required"."""

from __future__ import annotations

import json

import pytest

from backend.fields import canonical_field, field_path, with_field

from .harness import job_files, job_params, raw_bgra, rgba_image

IMAGE = raw_bgra(rgba_image(64, 64))


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        (("body", "loras", 0, "name"), "loras[0].name"),
        (("controls", 1, "model"), "controls[1].model"),
        (("inpaint", "fill"), "inpaint.fill"),
        (("query", "width"), "width"),
        (("body",), None),
    ],
)
def test_field_path_from_locations(parts, path) -> None:
    assert field_path(parts) == path


@pytest.mark.parametrize(
    ("spelling", "path"),
    [
        ("loras.0.name", "loras[0].name"),
        ("controls.12.model", "controls[12].model"),
        ("loras[0].name", "loras[0].name"),
        ("controls.1", "controls[1]"),
        ("inpaint.fill", "inpaint.fill"),
        ("width", "width"),
    ],
)
def test_every_spelling_becomes_the_canonical_one(spelling, path) -> None:
    assert canonical_field(spelling) == path


def test_with_field_leads_with_the_path_once() -> None:
    assert with_field("LoRA 'x' is not installed.", "loras.0.name") == (
        "loras[0].name: LoRA 'x' is not installed."
    )
    assert with_field("steps=0: expected 1..150", "steps") == "steps=0: expected 1..150"


def post(client, params, **parts):
    return client.post("/v1/jobs", files=job_files(params, **parts))


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


# (params, parts, status, field, message start) through POST /v1/jobs
JOB_CASES = {
    "missing mode (pydantic)": ({"width": 64, "height": 64}, {}, 422, "mode", "mode: required"),
    "missing lora name (pydantic)": (
        job_params(loras=[{"weight": 1}]),
        {},
        422,
        "loras[0].name",
        "loras[0].name: required",
    ),
    "lora weight (pydantic)": (
        job_params(loras=[{"name": "a"}, {"name": "b", "weight": 9}]),
        {},
        422,
        "loras[1].weight",
        "loras[1].weight=9",
    ),
    "control type (pydantic)": (
        job_params(
            controls=[{"type": "canny", "image": "control_0"}, {"type": "x", "image": "control_1"}]
        ),
        {"control_0": IMAGE, "control_1": IMAGE},
        422,
        "controls[1].type",
        "controls[1].type='x'",
    ),
    "nested inpaint option (pydantic)": (
        job_params(inpaint={"fill": "paint"}),
        {},
        422,
        "inpaint.fill",
        "inpaint.fill='paint'",
    ),
    "unknown parameter (pydantic)": (
        job_params(colour="red"),
        {},
        422,
        "colour",
        "colour: not a known parameter",
    ),
    "control part missing (multipart)": (
        job_params(controls=[{"type": "canny", "image": "control_3"}]),
        {},
        422,
        "controls[0].image",
        "controls[0].image=",
    ),
    "lora path (names)": (
        job_params(loras=[{"name": "ok"}, {"name": "../x"}]),
        {},
        422,
        "loras[1].name",
        "loras[1].name=",
    ),
    "controlnet path (names)": (
        job_params(controls=[{"type": "canny", "image": "control_0", "model": "/etc/x"}]),
        {"control_0": IMAGE},
        422,
        "controls[0].model",
        "controls[0].model=",
    ),
    "unknown lora (engine)": (
        job_params(loras=[{"name": "nope"}]),
        {},
        404,
        "loras[0].name",
        "",
    ),
}


@pytest.mark.parametrize("name", list(JOB_CASES))
def test_jobs_route_names_fields_canonically(client, name) -> None:
    params, parts, status, field, start = JOB_CASES[name]
    error = error_of(post(client, params, **parts), status)
    assert error["field"] == field
    assert error["message"].startswith(start), error["message"]


def test_a_missing_size_is_required_not_a_dump_of_the_object(client) -> None:
    error = error_of(post(client, {"mode": "txt2img", "height": 64}), 422)
    assert error["field"] == "width"
    assert error["message"].startswith("width:") and "required" in error["message"]
    assert "{" not in error["message"] and "mode" not in error["message"]


def test_live_route_names_fields_canonically(client) -> None:
    params = {"width": 64, "height": 64, "loras": [{"name": "x", "weight": 1}, {"weight": 1}]}
    response = client.post("/v1/live/doc/frames", files=job_files(params, image=IMAGE))
    error = error_of(response, 422)
    assert (error["field"], error["message"]) == ("loras[1].name", "loras[1].name: required")
    params = {"width": 64, "height": 64, "loras": [{"name": "nope"}]}
    response = client.post("/v1/live/doc/frames", files=job_files(params, image=IMAGE))
    assert error_of(response, 404)["field"] == "loras[0].name"


def test_preprocess_route_names_fields_canonically(client) -> None:
    body = json.dumps({"width": 64, "height": 64})
    response = client.post("/v1/preprocess", files=job_files(body, image=IMAGE))
    error = error_of(response, 422)
    assert (error["field"], error["message"]) == ("type", "type: required")


def test_a_failed_jobs_error_field_is_canonical(client, fake_engine) -> None:
    from backend.engine.errors import ModelLoadError

    fake_engine.fail_next = ModelLoadError("The LoRA could not be loaded.", field="loras.0.name")
    response = post(client, job_params())
    assert response.status_code == 202
    job_id = response.json()["id"]
    from .harness import wait_job

    info = wait_job(client, job_id)
    assert info["state"] == "failed" and info["error"]["field"] == "loras[0].name"
