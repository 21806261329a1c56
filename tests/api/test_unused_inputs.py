"""Parts that would be ignored are refused (issue 13, kind 9): a 422 at submit naming the part
(or option) and the mode that would use it, on the API, in the engine's own checks and in the
CLI. Inputs a mode does use are still accepted."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cli import build_parser
from backend.commands.generate import UsageError
from backend.commands.generate import build_request as cli_request
from backend.engine.errors import InvalidRequest
from backend.engine.request_checks import check_request
from backend.engine.types import CheckpointEntry, GenerationRequest, InpaintSettings, Inventory

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import gray_part, job_files, job_params, png_part, raw_bgra, rgba_image, serve_app

RGBA = rgba_image(64, 64)
MASK = np.zeros((64, 64), np.uint8)
MASK[16:48, 16:48] = 255
CONTROL = [{"type": "canny", "image": "control_0"}]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("unused"))
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        yield http


REFUSED = {
    "mask on img2img": (job_params(mode="img2img"), {"image": raw_bgra(RGBA), "mask": gray_part(MASK)}, "mask", "inpaint"),
    "mask png on img2img": (job_params(mode="img2img"), {"image": raw_bgra(RGBA), "mask": png_part(MASK)}, "mask", "inpaint"),
    "mask on txt2img": (job_params(), {"mask": gray_part(MASK)}, "mask", "inpaint"),
    "image on txt2img": (job_params(), {"image": raw_bgra(RGBA)}, "image", "img2img"),
    "image and mask on txt2img": (job_params(), {"image": raw_bgra(RGBA), "mask": gray_part(MASK)}, "image", "img2img"),
    "control part nobody names": (job_params(), {"control_3": raw_bgra(RGBA)}, "control_3", "control"),
    "second control part unnamed": (job_params(controls=CONTROL), {"control_0": raw_bgra(RGBA), "control_1": raw_bgra(RGBA)}, "control_1", "control"),
    "unknown part": (job_params(), {"picture": raw_bgra(RGBA)}, "picture", "not a part"),
    "grow on img2img": (job_params(mode="img2img", inpaint={"grow": 10}), {"image": raw_bgra(RGBA)}, "inpaint.grow", "inpaint"),
    "feather on txt2img": (job_params(inpaint={"feather": 0}), {}, "inpaint.feather", "inpaint"),
    "context on img2img": (job_params(mode="img2img", inpaint={"context": 1.0}), {"image": raw_bgra(RGBA)}, "inpaint.context", "inpaint"),
    "color_match off on img2img": (job_params(mode="img2img", inpaint={"color_match": False}), {"image": raw_bgra(RGBA)}, "inpaint.color_match", "inpaint"),
    "fill on txt2img": (job_params(inpaint={"fill": "blur"}), {}, "inpaint.fill", "img2img"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFUSED))
def test_ignored_input_is_refused_naming_it_and_its_mode(client, name: str) -> None:
    params, parts, field, user = REFUSED[name]
    response = client.post("/v1/jobs", files=job_files(params, **parts))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"] and user in error["message"]
    if field in ("image", "mask"):
        assert params["mode"] in error["message"]


ACCEPTED = {
    "img2img image": (job_params(mode="img2img", strength=0.5), {"image": raw_bgra(RGBA)}),
    "inpaint image + mask": (job_params(mode="inpaint"), {"image": raw_bgra(RGBA), "mask": gray_part(MASK)}),
    "outpaint with options": (job_params(mode="outpaint", inpaint={"grow": 8, "feather": 0, "fill": "blur"}), {"image": raw_bgra(RGBA), "mask": gray_part(MASK)}),
    "defaults sent in full on txt2img": (job_params(inpaint={"context": None, "grow": None, "color_match": True, "fill": "auto"}), {}),
    "fill on img2img": (job_params(mode="img2img", strength=0.5, inpaint={"fill": "neutral"}), {"image": raw_bgra(RGBA)}),
    "one part, two controls": (job_params(controls=[*CONTROL, {"type": "scribble", "image": "control_0"}]), {"control_0": raw_bgra(RGBA)}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_used_inputs_are_accepted(client, name: str) -> None:
    params, parts = ACCEPTED[name]
    response = client.post("/v1/jobs", files=job_files(params, **parts))
    assert response.status_code == 202, response.text


def test_engine_check_refuses_ignored_inputs_too() -> None:
    """The engine's own submit check (the CLI and every other caller go through it)."""
    inventory = Inventory(checkpoints=[CheckpointEntry("tiny", "sd15", False, "builtin:tiny")])

    def check(**changes: object) -> None:
        base: dict = {"mode": "img2img", "width": 64, "height": 64, "model": "tiny", "image": RGBA}
        check_request(GenerationRequest(**{**base, **changes}), inventory, "tiny", ["euler"], [])

    check(sampler="euler")  # used inputs pass
    with pytest.raises(InvalidRequest, match="^mask: mode img2img .* use mode inpaint") as info:
        check(sampler="euler", mask=MASK)
    assert info.value.field == "mask"
    with pytest.raises(InvalidRequest, match="^image: mode txt2img") as info:
        check(sampler="euler", mode="txt2img")
    assert info.value.field == "image"
    with pytest.raises(InvalidRequest, match="^inpaint.blur: 3 is used only by inpaint"):
        check(sampler="euler", inpaint=InpaintSettings(blur=3))


def test_cli_refuses_ignored_files(tmp_path) -> None:
    from PIL import Image

    image, mask = tmp_path / "i.png", tmp_path / "m.png"
    Image.fromarray(RGBA).save(image)
    Image.fromarray(MASK).save(mask)

    def cli(*argv: str) -> GenerationRequest:
        base = ["generate", "--model", "tiny", "--prompt", "x", "--out", str(tmp_path / "o.png")]
        return cli_request(build_parser().parse_args([*base, *argv]))

    with pytest.raises(UsageError, match="^--mask: mode img2img .* use mode inpaint"):
        cli("--mode", "img2img", "--image", str(image), "--mask", str(mask))
    with pytest.raises(UsageError, match="^--mask: mode txt2img"):
        cli("--mask", str(mask), "--width", "64", "--height", "64")
    with pytest.raises(UsageError, match="^--image: mode txt2img"):
        cli("--image", str(image))
    # With --composite the txt2img image is the base of the composite, not an engine input.
    request = cli("--image", str(image), "--composite", str(tmp_path / "c.png"))
    assert request.image is None and (request.width, request.height) == (64, 64)
