from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from backend.engine.errors import InvalidRequest
from backend.engine.metadata import encode_png, parameters_text, read_png_metadata
from backend.engine.types import ResultMetadata


def _meta(**changes: object) -> ResultMetadata:
    values: dict = dict(
        prompt="a cat on a sofa",
        negative_prompt="blurry, lowres",
        seed=1234,
        model="dreamshaper_8",
        sampler="dpmpp_2m_karras",
        steps=20,
        cfg_scale=7.0,
        strength=0.75,
        mode="inpaint",
        width=512,
        height=768,
        clip_skip=2,
    )
    values.update(changes)
    return ResultMetadata(**values)


def test_parameters_text_a1111_format() -> None:
    text = parameters_text(_meta())
    lines = text.split("\n")
    assert lines[0] == "a cat on a sofa"
    assert lines[1] == "Negative prompt: blurry, lowres"
    assert lines[2].startswith(
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model: dreamshaper_8, Denoising strength: 0.75, Clip skip: 2"
    )


def test_parameters_text_txt2img_loras_and_controls() -> None:
    meta = _meta(
        mode="txt2img",
        negative_prompt="",
        clip_skip=1,
        cfg_scale=5.5,
        loras=[{"name": "film", "weight": 0.8}],
        controls=[{"type": "canny", "model": "cn_canny", "strength": 1.0}],
    )
    lines = parameters_text(meta).split("\n")
    assert lines[0] == "a cat on a sofa <lora:film:0.8>"
    assert len(lines) == 2  # no negative prompt line
    assert "Denoising strength" not in lines[1] and "Clip skip" not in lines[1]
    assert "CFG scale: 5.5" in lines[1]
    assert 'ControlNet 0: "Type: canny, Model: cn_canny, Strength: 1.0"' in lines[1]


def test_png_round_trip_keeps_pixels_and_metadata() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    meta = _meta(prompt="ünïcode ✓ prompt")
    data = encode_png(image, meta, extra={"Software": "Diffusion Layers"}, offset=(12, 34))
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "RGBA"
        assert np.array_equal(np.asarray(decoded), image)
    text = read_png_metadata(data)
    assert text["parameters"] == parameters_text(meta)
    assert text["Software"] == "Diffusion Layers"
    payload = json.loads(text["diffusion_layers"])
    assert payload["version"] == 1
    assert payload["offset"] == {"x": 12, "y": 34}
    assert ResultMetadata(**payload["metadata"]) == meta


def test_png_rgb_without_metadata() -> None:
    image = np.full((8, 8, 3), 50, np.uint8)
    data = encode_png(image, None)
    assert read_png_metadata(data) == {}
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "RGB"


def test_png_bad_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        encode_png(np.zeros((8, 8), np.uint8), None)
    assert info.value.field == "image"
    with pytest.raises(InvalidRequest, match="compress_level"):
        encode_png(np.zeros((8, 8, 4), np.uint8), None, compress_level=12)
    with pytest.raises(InvalidRequest, match="extra"):
        encode_png(np.zeros((8, 8, 4), np.uint8), _meta(), extra={"parameters": "x"})
    with pytest.raises(InvalidRequest) as info:
        read_png_metadata(b"definitely not a png")
    assert info.value.field == "data"
