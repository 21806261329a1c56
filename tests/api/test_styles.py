"""Styles over HTTP: the folder round trip, built-ins, status codes, and how a style resolves
into the request the engine gets (explicit request fields win, then the style, then defaults).
"""

from __future__ import annotations

import json

import pytest

from backend.engine.types import GenerationRequest

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import job_files, job_params, serve_app, submit, wait_job


class RecordingEngine(FakeEngine):
    """The fake engine, keeping every request it was asked to check."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[GenerationRequest] = []

    def check_request(self, request: GenerationRequest) -> None:
        self.checked.append(request)
        super().check_request(request)


@pytest.fixture
def styled(tmp_path):
    engine = RecordingEngine()
    settings = make_settings(tmp_path, styles_dir=str(tmp_path / "styles"))
    with serve_app(settings, engine) as running, running.client() as http:
        yield http, engine, tmp_path / "styles"


STYLE = {
    "name": "Ink Wash",
    "checkpoints": ["missing-model", "sub/dir model"],
    "loras": [{"name": "film", "weight": 0.6}],
    "prompt": "ink wash painting of {prompt}, soft edges",
    "negative_prompt": "photo",
    "sampler": "euler",
    "steps": 12,
    "cfg_scale": 4.5,
    "clip_skip": 2,
    "prediction": "v_prediction",
    "live_sampler": "euler",
    "live_steps": 3,
    "resolution": 640,
}


def test_style_round_trip_through_the_folder(styled):
    http, _engine, folder = styled
    saved = http.put("/v1/styles/Ink Wash", json=STYLE)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {**STYLE, "vae": None, "builtin": False}
    on_disk = json.loads((folder / "Ink Wash.json").read_text(encoding="utf-8"))
    assert on_disk["loras"] == [{"name": "film", "weight": 0.6}]
    assert http.get("/v1/styles/Ink Wash").json() == saved.json()
    names = [style["name"] for style in http.get("/v1/styles").json()["styles"]]
    assert "Ink Wash" in names
    assert http.delete("/v1/styles/Ink Wash").status_code == 204
    assert not (folder / "Ink Wash.json").exists()
    assert http.get("/v1/styles/Ink Wash").status_code == 404
    assert http.delete("/v1/styles/Ink Wash").status_code == 404


def test_builtins_come_first_per_installed_family_and_are_read_only(styled):
    http, _engine, _folder = styled
    http.put("/v1/styles/Aaa", json={"name": "Aaa"})
    styles = http.get("/v1/styles").json()["styles"]
    builtins = [style for style in styles if style["builtin"]]
    assert builtins and styles[: len(builtins)] == builtins  # built-ins first
    # The fake server has SD1.5 checkpoints only: SD1.5 built-ins, none for SDXL.
    assert all(style["name"].startswith("SD1.5 ") for style in builtins)
    assert builtins[0]["checkpoints"][:2] == ["tiny", "sub/dir model"]  # plain first
    name = builtins[0]["name"]
    for response in (
        http.put(f"/v1/styles/{name}", json={**builtins[0], "prompt": "x {prompt}"}),
        http.delete(f"/v1/styles/{name}"),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["field"] == "name"
        assert "built-in" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("%2E%2E", (404, 422)),  # ".." (a client folds a plain "/.." itself)
        ("..%2Fsecret", (404, 422)),
        (".hidden", (422,)),
        ("trailing ", (422,)),
        ("a" * 81, (422,)),
        ("bad*name", (422,)),
    ],
)
def test_bad_style_names_are_refused_before_any_file_is_touched(styled, name, status):
    http, _engine, folder = styled
    response = http.put(f"/v1/styles/{name}", json={"name": name})
    assert response.status_code in status, response.text
    assert not folder.exists() or not any(folder.iterdir())


def test_put_body_must_name_the_same_style(styled):
    http, _engine, _folder = styled
    response = http.put("/v1/styles/One", json={"name": "Two"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"


def test_a_style_fills_what_the_request_leaves_out(styled):
    http, engine, _folder = styled
    http.put("/v1/styles/Ink Wash", json=STYLE)
    params = {"mode": "txt2img", "prompt": "a heron", "width": 64, "height": 64}
    job = submit(http, {**params, "style": "Ink Wash"})
    assert wait_job(http, job["id"])["state"] == "done"
    request = engine.checked[-1]
    assert request.model == "sub/dir model"  # first installed of the fallbacks
    assert request.prompt == "ink wash painting of a heron, soft edges"
    assert request.negative_prompt == "photo"
    assert (request.sampler, request.steps, request.cfg_scale, request.clip_skip) == (
        "euler",
        12,
        4.5,
        2,
    )
    assert [(lo.name, lo.weight, lo.field) for lo in request.loras] == [("film", 0.6, "style")]
    assert (request.style, request.prediction, request.resolution) == (
        "Ink Wash",
        "v_prediction",
        640,
    )
    assert "sampler" in request.resolved["from_style"]


def test_explicit_request_fields_win_even_at_their_default(styled):
    http, engine, _folder = styled
    http.put("/v1/styles/Ink Wash", json=STYLE)
    params = job_params(
        style="Ink Wash",
        model="tiny",
        sampler="dpmpp_2m_karras",  # the default value, but sent: it wins
        steps=2,
        cfg_scale=7.0,
        loras=[{"name": "film", "weight": 1.0}],
    )
    job = submit(http, params)
    wait_job(http, job["id"])
    request = engine.checked[-1]
    assert (request.model, request.sampler, request.steps, request.cfg_scale) == (
        "tiny",
        "dpmpp_2m_karras",
        2,
        7.0,
    )
    assert request.clip_skip == 2  # not sent: the style's
    assert [(lo.name, lo.weight, lo.field) for lo in request.loras] == [
        ("film", 1.0, "loras[0].name")
    ]


def test_template_without_placeholder_appends_the_prompt(styled):
    http, engine, _folder = styled
    http.put("/v1/styles/Plain", json={"name": "Plain", "prompt": "masterpiece"})
    submit(http, job_params(style="Plain", prompt="a fox"))
    assert engine.checked[-1].prompt == "masterpiece, a fox"


def test_unknown_style_and_uninstalled_checkpoints_are_422_on_style(styled):
    http, _engine, _folder = styled
    response = http.post("/v1/jobs", files=job_files(job_params(style="Nope")))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "style"
    http.put("/v1/styles/Gone", json={"name": "Gone", "checkpoints": ["a", "b"]})
    response = http.post("/v1/jobs", files=job_files(job_params(style="Gone")))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "style" and "a, b" in error["message"]


def test_a_style_lora_that_is_not_installed_names_the_style(styled):
    http, _engine, _folder = styled
    http.put("/v1/styles/Lost", json={"name": "Lost", "loras": [{"name": "nowhere"}]})
    response = http.post("/v1/jobs", files=job_files(job_params(style="Lost")))
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "style"


def test_a_broken_style_file_is_left_out_of_the_list(styled):
    http, _engine, folder = styled
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Broken.json").write_text("{not json", encoding="utf-8")
    (folder / "Wrong.json").write_text(json.dumps({"steps": "many"}), encoding="utf-8")
    response = http.get("/v1/styles")
    assert response.status_code == 200
    names = [style["name"] for style in response.json()["styles"]]
    assert "Broken" not in names and "Wrong" not in names
    assert http.get("/v1/styles/Broken").status_code == 404


def test_writes_need_the_token(tmp_path):
    settings = make_settings(
        tmp_path, styles_dir=str(tmp_path / "styles"), token="secret-token-123"
    )
    with serve_app(settings, FakeEngine()) as running:
        with running.client() as anonymous:
            assert anonymous.put("/v1/styles/A", json={"name": "A"}).status_code == 401
            assert anonymous.get("/v1/styles").status_code == 401
        with running.client(token="secret-token-123") as http:
            assert http.put("/v1/styles/A", json={"name": "A"}).status_code == 200


def test_live_frames_take_the_live_sampler_and_steps(styled):
    http, engine, _folder = styled
    http.put("/v1/styles/Ink Wash", json=STYLE)
    from .harness import raw_bgra, rgba_image

    params = {"prompt": "a heron", "width": 64, "height": 64, "style": "Ink Wash"}
    response = http.post(
        "/v1/live/doc-1/frames", files=job_files(params, image=raw_bgra(rgba_image(64, 64)))
    )
    assert response.status_code == 200, response.text
    request = engine.checked[-1]
    assert (request.sampler, request.steps) == ("euler", 3)
    assert request.prompt == "ink wash painting of a heron, soft edges"


def test_a_live_frame_naming_an_unknown_style_is_422_on_style(styled):
    http, _engine, _folder = styled
    from .harness import raw_bgra, rgba_image

    params = {"prompt": "a heron", "width": 64, "height": 64, "style": "Nope"}
    response = http.post(
        "/v1/live/doc-2/frames", files=job_files(params, image=raw_bgra(rgba_image(64, 64)))
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "style"


def test_a_bad_style_body_names_the_field(styled):
    http, _engine, folder = styled
    response = http.put("/v1/styles/Odd", json={"name": "Odd", "steps": 0})
    assert response.status_code == 422
    assert response.json()["error"]["field"].endswith("steps")
    assert not folder.exists() or not any(folder.iterdir())
