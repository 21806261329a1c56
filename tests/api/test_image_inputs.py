"""Every image decoding path agrees (issue 13, kind 2 and the ergonomics): every PNG colour type
x bit depth, as image, mask and control, through the API and through the CLI, decodes to the
exact values tests/png_samples.py computes by hand. Plus JPEG/WebP parts, sniffing of
``application/octet-stream``, EXIF orientation, sizes taken from the image part, control images
scaled to cover the region, one part serving several controls, raw BGRA masks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from png_samples import Sample, all_samples, exif_orientation, expected_mask, write_png

from backend.api.images import OCTET_STREAM
from backend.cli import build_parser
from backend.commands.generate import UsageError
from backend.commands.generate import build_request as cli_request
from backend.engine.compositing import resize_cover
from backend.engine.types import GenerationRequest
from backend.protocol import JPEG, PNG, RAW_BGRA, WEBP

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import gray_part, job_files, raw_bgra, rgba_image, serve_app

W, H = 24, 16
SAMPLES = all_samples(W, H)
REGION = rgba_image(W, H, seed=5)


class RecordingEngine(FakeEngine):
    """The fake engine, keeping every request the API built (what the decoders produced)."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[GenerationRequest] = []

    def check_request(self, request: GenerationRequest) -> None:
        super().check_request(request)
        self.checked.append(request)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    engine = RecordingEngine()
    settings = make_settings(tmp_path_factory.mktemp("image-inputs"))
    with serve_app(settings, engine) as server, server.client() as http:
        yield http, engine


def post(api, params: dict, **parts) -> GenerationRequest:
    http, engine = api
    response = http.post(
        "/v1/jobs", files=job_files({"prompt": "x", "steps": 1, **params}, **parts)
    )
    assert response.status_code == 202, response.text
    return engine.checked[-1]


def refused(api, params: dict, **parts) -> tuple[int, dict]:
    http, _ = api
    response = http.post(
        "/v1/jobs", files=job_files({"prompt": "x", "steps": 1, **params}, **parts)
    )
    assert response.status_code != 202, response.text
    return response.status_code, response.json()["error"]


# -- the matrix: API ------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_api_image_part_every_png_type(api, sample: Sample) -> None:
    # No width/height: the PNG carries its size.
    request = post(api, {"mode": "img2img", "strength": 0.5}, image=("i.png", sample.data, PNG))
    assert (request.width, request.height) == (W, H)
    assert np.array_equal(request.image, sample.rgba)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_api_mask_part_every_png_type(api, sample: Sample) -> None:
    params = {"mode": "inpaint", "width": W, "height": H}
    request = post(api, params, image=raw_bgra(REGION), mask=("m.png", sample.data, PNG))
    assert np.array_equal(request.mask, sample.mask)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_api_control_part_every_png_type(api, sample: Sample) -> None:
    params = {
        "mode": "txt2img",
        "width": W,
        "height": H,
        "controls": [{"type": "canny", "image": "control_0"}],
    }
    request = post(api, params, control_0=("c.png", sample.data, OCTET_STREAM))
    assert np.array_equal(request.controls[0].image, sample.rgba)


# -- the matrix: CLI ------------------------------------------------------------------------


def cli(tmp_path, *argv: str) -> GenerationRequest:
    args = build_parser().parse_args(
        ["generate", "--model", "tiny", "--prompt", "x", "--out", str(tmp_path / "o.png"), *argv]
    )
    return cli_request(args)


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_cli_image_mask_and_control_every_png_type(tmp_path, sample: Sample) -> None:
    path = write(tmp_path, "s.png", sample.data)
    region = write(tmp_path, "region.png", write_png(REGION, 6, 8))
    assert np.array_equal(cli(tmp_path, "--mode", "img2img", "--image", path).image, sample.rgba)
    if sample.mask.max() > 8:  # the CLI refuses a mask with nothing selected
        request = cli(tmp_path, "--mode", "inpaint", "--image", region, "--mask", path)
        assert np.array_equal(request.mask, sample.mask)
    request = cli(tmp_path, "--width", str(W), "--height", str(H), "--control", f"canny:{path}")
    assert np.array_equal(request.controls[0].image, sample.rgba)


# -- the examples --------------------------------------------------------------------


def test_16_bit_grey_means_its_value_through_api_and_cli(api, tmp_path) -> None:
    values = (np.arange(64 * 48).reshape(48, 64) * 7) % 256
    data = write_png(values * 257, 0, 16)
    request = post(api, {"mode": "img2img", "strength": 0.5}, image=("g.png", data, PNG))
    assert np.array_equal(request.image[..., 0], values)
    params = {"mode": "inpaint", "width": 64, "height": 48}
    request = post(api, params, image=raw_bgra(rgba_image(64, 48)), mask=("m.png", data, PNG))
    assert np.array_equal(request.mask, values)
    path = write(tmp_path, "g.png", data)
    assert np.array_equal(cli(tmp_path, "--mode", "img2img", "--image", path).image[..., 0], values)


def alpha_square_mask() -> np.ndarray:
    """A white RGBA mask whose selection is in its alpha: 255 only in 20x20 at (56, 30)."""
    mask = np.full((64, 96, 4), 255, np.uint8)
    mask[..., 3] = 0
    mask[30:50, 56:76, 3] = 255
    return mask


def test_alpha_selection_is_the_mask_for_every_codec(api, tmp_path) -> None:
    rgba = alpha_square_mask()
    expected = rgba[..., 3]
    region = rgba_image(96, 64)
    params = {"mode": "inpaint", "width": 96, "height": 64}
    for part in (
        ("m.png", write_png(rgba, 6, 8), PNG),
        ("m.webp", _encoded(rgba, "WEBP", lossless=True, exact=True), WEBP),
        raw_bgra(rgba),
    ):
        request = post(api, params, image=raw_bgra(region), mask=part)
        assert np.array_equal(request.mask, expected), part[2]
    path = write(tmp_path, "m.png", write_png(rgba, 6, 8))
    region_path = write(tmp_path, "r.png", write_png(region, 6, 8))
    request = cli(tmp_path, "--mode", "inpaint", "--image", region_path, "--mask", path)
    assert np.array_equal(request.mask, expected)


def test_opaque_raw_bgra_mask_means_its_luminance(api) -> None:
    """No transparency: the luminance, as for a PNG (the raw path used to take alpha = all)."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[4:12, 8:16, :3] = 255
    params = {"mode": "inpaint", "width": W, "height": H}
    request = post(api, params, image=raw_bgra(REGION), mask=raw_bgra(rgba))
    assert np.array_equal(request.mask, expected_mask(rgba))
    assert request.mask.sum() == 255 * 64


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_jpeg_and_webp_parts_like_the_cli(api, tmp_path) -> None:
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.dstack([xx * 10, yy * 15, np.full((H, W), 128)]).astype(np.uint8)  # smooth
    for data, ctype in (
        (_encoded(rgb, "JPEG", quality=90), JPEG),
        (_encoded(REGION, "WEBP", lossless=True), WEBP),
        (_encoded(rgb, "JPEG", quality=90), OCTET_STREAM),  # sniffed by signature
        (_encoded(REGION, "WEBP", lossless=True), PNG),  # mislabelled: the bytes decide
    ):
        request = post(api, {"mode": "img2img", "strength": 0.5}, image=("i", data, ctype))
        path = write(tmp_path, "i.bin", data)
        assert np.array_equal(
            request.image, cli(tmp_path, "--mode", "img2img", "--image", path).image
        )
        if data[:4] == b"RIFF":
            assert np.array_equal(request.image, REGION)
        else:
            pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
            assert np.array_equal(request.image, pillow)
            assert np.abs(request.image[..., :3].astype(int) - rgb).max() < 12


def test_exif_orientation_before_the_size_check_for_every_role(api, tmp_path) -> None:
    """120x80 stored, Orientation 6: an 80x120 picture, the same for image, mask and control."""
    stored = np.zeros((80, 120, 4), np.uint8)
    stored[..., 3] = 255
    stored[:10, :, :3] = 255  # white band on the stored top edge: on the right once upright
    data = write_png(stored, 6, 8, exif=exif_orientation(6))
    upright = np.ascontiguousarray(np.rot90(stored, -1))
    request = post(api, {"mode": "img2img", "strength": 0.5}, image=("i.png", data, PNG))
    assert (request.width, request.height) == (80, 120)
    assert np.array_equal(request.image, upright)
    params = {
        "mode": "inpaint",
        "controls": [{"type": "canny", "image": "control_0"}],
    }
    request = post(api, params, image=("i.png", data, PNG), mask=("m.png", data, PNG),
                   control_0=("c.png", data, PNG))  # fmt: skip
    assert np.array_equal(request.mask, upright[..., 0])
    assert np.array_equal(request.controls[0].image, upright)
    status, error = refused(api, {"mode": "img2img", "width": 120, "height": 80},
                            image=("i.png", data, PNG))  # fmt: skip
    assert status == 422 and error["field"] == "image" and "80x120" in error["message"]
    path = write(tmp_path, "o.png", data)
    assert np.array_equal(cli(tmp_path, "--mode", "img2img", "--image", path).image, upright)


# -- sizes ------------------------------------------------------------------------------------


def test_size_from_image_part_or_required(api) -> None:
    png = ("i.png", write_png(REGION, 6, 8), PNG)
    request = post(api, {"mode": "img2img", "strength": 0.5, "width": W}, image=png)
    assert (request.width, request.height) == (W, H)
    status, error = refused(api, {"mode": "img2img", "width": W + 8}, image=png)
    assert (status, error["field"]) == (422, "image")
    status, error = refused(api, {"mode": "txt2img"})
    assert (status, error["field"]) == (422, "width")
    assert error["message"].startswith("width: required")
    status, error = refused(api, {"mode": "img2img", "width": W}, image=raw_bgra(REGION))
    assert (status, error["field"]) == (422, "height")
    assert error["message"].startswith("height: required")
    status, error = refused(api, {"mode": "img2img"})
    assert (status, error["field"]) == (422, "image")


def test_preprocess_takes_its_size_from_the_image(api) -> None:
    http, _ = api
    files = job_files({"type": "canny"}, image=("i.png", write_png(REGION, 6, 8), PNG))
    response = http.post("/v1/preprocess", files=files)
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (W, H)


def test_control_of_another_size_covers_the_region_and_parts_are_shared(api) -> None:
    small = rgba_image(12, 4, seed=9)  # 3:1 onto 3:2: scaled x4 to 48x16, 12 px cut each side
    params = {
        "mode": "txt2img",
        "width": W,
        "height": H,
        "controls": [
            {"type": "canny", "image": "control_0"},
            {"type": "scribble", "image": "control_0", "strength": 0.5},
        ],
    }
    request = post(api, params, control_0=("c.png", write_png(small, 6, 8), PNG))
    expected = resize_cover(small, W, H)
    assert expected.shape == (H, W, 4)
    for control in request.controls:
        assert np.array_equal(control.image, expected)
    assert [c.type for c in request.controls] == ["canny", "scribble"]
    # A raw control part carries no size: it must be the region's.
    params["controls"] = [{"type": "canny", "image": "control_0"}]
    status, error = refused(api, params, control_0=raw_bgra(small))
    assert (status, error["field"]) == (422, "control_0")


def test_cover_keeps_the_centre() -> None:
    image = np.zeros((10, 30, 4), np.uint8)
    image[..., 3] = 255
    image[:, 10:20, 0] = 255  # the middle third is red
    out = resize_cover(image, 20, 20)  # 3:1 onto 1:1: the middle 10x10 scaled x2
    assert out.shape == (20, 20, 4)
    assert out[:, 5:15, 0].min() == 255 and out[..., 0].min() > 190  # Lanczos rings at the cut


def test_cli_refusals_name_the_option(tmp_path) -> None:
    gif = write(tmp_path, "x.gif", b"GIF89a\x01\x00")
    with pytest.raises(UsageError, match="^--image: not a PNG, JPEG or WebP file"):
        cli(tmp_path, "--mode", "img2img", "--image", gif)
    empty = write(tmp_path, "m.png", write_png(np.full((H, W), 3, np.uint8), 0, 8))
    region = write(tmp_path, "r.png", write_png(REGION, 6, 8))
    with pytest.raises(UsageError, match="^--mask: nothing is selected"):
        cli(tmp_path, "--mode", "inpaint", "--image", region, "--mask", empty)


def test_raw_gray_image_and_mask_stay_exact(api) -> None:
    grey = rgba_image(W, H, seed=2)[..., 0]
    params = {"mode": "inpaint", "width": W, "height": H}
    request = post(api, params, image=gray_part(grey), mask=gray_part(grey))
    assert np.array_equal(request.mask, grey)
    assert np.array_equal(request.image[..., 0], grey) and request.image[..., 3].min() == 255
    assert RAW_BGRA  # raw BGRA masks: test_alpha_selection_is_the_mask_for_every_codec
