"""The fast PNG writer: exact pixels back through PIL, libpng (cv2) and plain zlib, and the
metadata chunks read back by read_png_metadata and by PIL as SD tools do."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from backend.engine import png_fast
from backend.engine.errors import InvalidRequest
from backend.engine.metadata import JSON_KEY, PARAMETERS_KEY, encode_png, read_png_metadata
from backend.engine.png_fast import encode_png_fast, png_pieces
from backend.engine.types import ResultMetadata


def noisy(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking each CRC on the way."""
    assert data[:8] == png_fast.SIGNATURE
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(body, zlib.crc32(kind)), kind
        out.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return out


def pil_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("channels", [4, 3, 0])
def test_pixels_round_trip_exactly(level, channels):
    image = noisy(37, 53, channels, seed=level)
    data = encode_png_fast(image, level=level)
    assert np.array_equal(pil_pixels(data), image)
    flag = cv2.IMREAD_UNCHANGED
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)  # libpng, strict CRCs
    assert decoded is not None
    if channels == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    elif channels == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, image)


@pytest.mark.parametrize(
    ("level", "stored_max"),
    [(0, 700), (0, 100), (1, 700)],  # 100: rows wider than a stored block (the copying path)
)
@pytest.mark.parametrize("workers", [1, 3])
def test_many_bands_form_one_valid_zlib_stream(monkeypatch, level, stored_max, workers):
    monkeypatch.setattr(png_fast, "BAND_BYTES", 1000)  # ~5 rows a band: many IDAT chunks
    monkeypatch.setattr(png_fast, "STORED_MAX", stored_max)  # several stored blocks per band
    image = noisy(61, 47, 4, seed=workers)
    data = encode_png_fast(image, level=level, workers=workers)
    idats = [body for kind, body in chunks(data) if kind == b"IDAT"]
    assert len(idats) > 10
    rows = zlib.decompress(b"".join(idats))  # checks the Adler-32 trailer too
    assert len(rows) == 61 * (1 + 47 * 4)
    assert np.array_equal(pil_pixels(data), image)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([0, 3, 4]),
    level=st.sampled_from([0, 1, 3]),
    seed=st.integers(0, 2**16),
)
def test_any_shape_round_trips(height, width, channels, level, seed):
    image = noisy(height, width, channels, seed)
    assert np.array_equal(pil_pixels(encode_png_fast(image, level=level, workers=2)), image)


def test_flat_image_compresses_and_level_zero_stores():
    image = np.full((256, 256, 4), 200, np.uint8)
    stored = encode_png_fast(image, level=0)
    packed = encode_png_fast(image, level=1)
    assert len(stored) > 256 * 256 * 4  # every byte, plus filter bytes and block headers
    assert len(packed) < len(stored) // 50


def test_text_chunks_are_read_back_by_pil_and_read_png_metadata():
    text = [("parameters", "a cat, <lora:x:0.5>\nSteps: 2"), ("unicode", "猫 ✓ café")]
    data = encode_png_fast(noisy(8, 8, 4), text)
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds[:4] == [b"IHDR", b"tEXt", b"iTXt", b"IDAT"] and kinds[-1] == b"IEND"
    with Image.open(io.BytesIO(data)) as image:
        assert image.text == dict(text)
    assert read_png_metadata(data) == dict(text)


def test_metadata_encode_png_keeps_its_contract():
    meta = ResultMetadata(
        prompt="ein Fuchs im Schnee, 狐",
        negative_prompt="blurry",
        seed=42,
        model="tiny",
        sampler="euler_a",
        steps=2,
        cfg_scale=7.0,
        strength=0.6,
        mode="img2img",
        width=24,
        height=16,
    )
    image = noisy(16, 24, 4, seed=5)
    data = encode_png(image, meta, extra={"Software": "Diffusion Layers"}, offset=(3, 4))
    assert np.array_equal(pil_pixels(data), image)
    with Image.open(io.BytesIO(data)) as opened:  # what A1111 and other SD tools read
        assert opened.text["parameters"].startswith("ein Fuchs im Schnee, 狐\n")
        assert "Seed: 42" in opened.text["parameters"]
    found = read_png_metadata(data)
    assert found[PARAMETERS_KEY] == opened.text["parameters"]
    assert '"offset": {"x": 3, "y": 4}' in found[JSON_KEY]
    assert found["Software"] == "Diffusion Layers"


@pytest.mark.parametrize("level", [0, 1])
def test_pieces_join_to_the_same_file(level):
    image = noisy(20, 30, 4)
    pieces = png_pieces(image, [("k", "v")], level, 2)
    assert b"".join(pieces) == encode_png_fast(image, [("k", "v")], level, 2)
    if level == 0:  # stored: the rows are views of the image, not copies
        assert any(isinstance(p, memoryview) and p.obj is not None for p in pieces)


@pytest.mark.parametrize(
    ("image", "level", "workers", "field"),
    [
        (np.zeros((4, 4, 4), np.float32), 1, 1, "image"),
        (np.zeros((4, 4, 2), np.uint8), 1, 1, "image"),
        (np.zeros((0, 4, 4), np.uint8), 1, 1, "image"),
        (np.zeros((4, 4, 4), np.uint8), 10, 1, "level"),
        (np.zeros((4, 4, 4), np.uint8), 1, 0, "workers"),
    ],
)
def test_bad_inputs_name_the_parameter(image, level, workers, field):
    with pytest.raises(InvalidRequest) as caught:
        encode_png_fast(image, level=level, workers=workers)
    assert caught.value.field == field


@pytest.mark.parametrize("key", ["", "k" * 80, "clé✓"])
def test_bad_text_keys_are_refused(key):
    with pytest.raises(InvalidRequest):
        encode_png_fast(noisy(2, 2, 4), [(key, "v")])
