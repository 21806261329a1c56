"""Pixel conversions, request building (multipart bytes parse back), settings, SSE parsing."""

from __future__ import annotations

import email.parser
import email.policy
import json

import pytest
from diffusion_layers import pixels
from diffusion_layers.errors import InvalidSetting
from diffusion_layers.geometry import Rect
from diffusion_layers.mode import CanvasFacts, choose_mode
from diffusion_layers.protocol import RAW_BGRA, RAW_GRAY, JobParams
from diffusion_layers.request import ControlImage, build_job, build_preprocess, encode_multipart
from diffusion_layers.settings import (
    ControlLayer,
    DictStore,
    LoraChoice,
    PluginSettings,
    controls_json,
    parse_controls,
)
from diffusion_layers.sse import SseParser


def test_bgra_round_trips_through_qimage_keeping_straight_alpha(qapp) -> None:
    data = bytes([10, 20, 30, 255, 1, 2, 3, 0, 200, 100, 50, 128, 0, 0, 0, 0])
    image = pixels.bgra_to_qimage(data, 2, 2)
    assert image.pixelColor(0, 0).getRgb() == (30, 20, 10, 255)  # BGRA bytes = ARGB32
    assert pixels.qimage_to_bgra(image) == data
    with pytest.raises(pixels.PixelError, match="expected 16"):
        pixels.bgra_to_qimage(data[:-1], 2, 2)


def test_mask_makes_pixels_transparent_outside_the_selection(qapp) -> None:
    data = bytes([0, 0, 255, 255]) * 4
    out = pixels.apply_mask(data, bytes([255, 0, 0, 255]), 2, 2)
    assert out[3::4] == bytes([255, 0, 0, 255])
    assert out[0:4] == bytes([0, 0, 255, 255])


def test_alpha_checks() -> None:
    image = bytes([9, 9, 9, 255, 9, 9, 9, 0])
    assert pixels.transparent_under_mask(image, bytes([0, 255]))
    assert not pixels.transparent_under_mask(image, bytes([255, 0]))
    assert pixels.is_fully_transparent(bytes(8))
    assert not pixels.is_fully_transparent(image)


def test_crop_gray_reads_zero_outside(qapp) -> None:
    from diffusion_layers.qt import QRect

    assert pixels.crop_gray(bytes([1, 2, 3, 4]), 2, 2, QRect(1, 1, 2, 2)) == bytes([4, 0, 0, 0])


def _parse_multipart(content_type: str, body: bytes) -> dict:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = {}
    for part in message.iter_parts():
        parts[part.get_param("name", header="content-disposition")] = (
            part.get_content_type(),
            part.get_payload(decode=True),
        )
    return parts


def test_inpaint_request_parses_back_with_raw_parts() -> None:
    settings = PluginSettings(
        prompt="fox",
        seed=5,
        batch=2,
        strength=0.7,
        loras=[LoraChoice("film", 0.5)],
    )
    lines = ControlLayer("lines", "canny", 0.8, 0.0, 0.9)
    region = Rect(-8, 16, 16, 8)
    image = bytes(range(256)) * 2
    mask = bytes([255] * 64 + [0] * 64)
    control = bytes([7]) * 512
    choice = choose_mode(CanvasFacts(True), settings.strength)
    params, parts = build_job(settings, choice, region, image, mask, [ControlImage(lines, control)])
    content_type, body = encode_multipart(parts)
    got = _parse_multipart(content_type, body)
    assert list(got) == ["params", "image", "mask", "control_0"]
    sent = JobParams.from_json(got["params"][1])
    assert sent == params
    assert (sent.mode, sent.x, sent.y, sent.width, sent.height) == ("inpaint", -8, 16, 16, 8)
    assert sent.strength == 0.7 and sent.seed == 5 and sent.batch == 2
    assert sent.controls[0].image == "control_0" and sent.controls[0].type == "canny"
    assert sent.loras[0].name == "film" and sent.loras[0].weight == 0.5
    assert got["image"] == (RAW_BGRA, image)
    assert got["mask"] == (RAW_GRAY, mask)
    assert got["control_0"] == (RAW_BGRA, control)


def test_txt2img_sends_no_image_and_full_strength() -> None:
    settings = PluginSettings(strength=0.3)
    choice = choose_mode(CanvasFacts(False, canvas_empty=True), 0.3)
    params, parts = build_job(settings, choice, Rect(0, 0, 8, 8), None, None, [])
    assert [p.name for p in parts] == ["params"]
    assert params.strength == 1.0 and params.mode == "txt2img"


def test_request_guards_name_the_bad_value() -> None:
    choice = choose_mode(CanvasFacts(True), 1.0)
    with pytest.raises(InvalidSetting, match="mask has 3 bytes"):
        build_job(PluginSettings(), choice, Rect(0, 0, 8, 8), bytes(256), bytes(3), [])
    with pytest.raises(InvalidSetting, match="steps must be 1..150, got 0"):
        build_job(PluginSettings(steps=0), choice, Rect(0, 0, 8, 8), bytes(256), bytes(64), [])
    with pytest.raises(InvalidSetting, match="control type 'nope'"):
        ControlLayer("x", "nope").check()
    parts = build_preprocess("depth", Rect(0, 0, 8, 8), bytes(256))
    assert json.loads(parts[0].data) == {"type": "depth", "width": 8, "height": 8}


def test_settings_round_trip_through_a_store() -> None:
    store = DictStore()
    settings = PluginSettings(
        server_url="http://127.0.0.1:9999",
        token="t0k",
        model="tiny",
        prompt="a cat",
        negative_prompt="dog",
        strength=0.55,
        steps=7,
        cfg_scale=3.5,
        sampler="euler_a",
        seed=99,
        batch=3,
        loras=[LoraChoice("grain", -0.25)],
        live=True,
    )
    settings.save(store)
    assert "controls" not in store.values  # controls belong to each document (doc_controls)
    assert PluginSettings.load(store) == settings
    controls = [ControlLayer("Sketch", "scribble", 1.1, 0.1, 0.8, layer_id="{1}")]
    assert parse_controls(controls_json(controls)) == controls


def test_settings_defaults_and_bad_values_fall_back() -> None:
    defaults = PluginSettings.load(DictStore())
    assert defaults.server_url == "http://127.0.0.1:7860" and defaults.seed == -1
    store = DictStore({"steps": "many", "batch": "2"})
    loaded = PluginSettings.load(store)
    assert loaded.steps == 20 and loaded.batch == 2
    assert parse_controls('[{"layer": "a", "type": "bogus"}]') == []
    # Controls written by hand (only the layer name is required; found by name then).
    loaded_controls = parse_controls('[{"layer": "Lines", "type": "lineart"}]')
    assert loaded_controls == [ControlLayer("Lines", "lineart", 1.0, 0.0, 1.0)]
    assert loaded_controls[0].ref == "Lines"


def test_sse_parser_handles_any_chunking_and_comments() -> None:
    stream = b'event: queued\ndata: {}\n\n: ping\n\nevent: progress\r\ndata: {"step": 1}\r\n\r\nevent: done\ndata: a\ndata: b\n\n'
    for size in (1, 3, 7, len(stream)):
        parser = SseParser()
        events = []
        for i in range(0, len(stream), size):
            events += parser.feed(stream[i : i + size])
        assert [(e.event, e.data) for e in events] == [
            ("queued", "{}"),
            ("progress", '{"step": 1}'),
            ("done", "a\nb"),
        ]
        assert parser.comments == 1
