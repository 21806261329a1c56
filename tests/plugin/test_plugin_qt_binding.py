"""One source, both bindings: the binding choice, byte-exact pixel conversions, QByteArray and
network behaviour that differ between PyQt5 and PyQt6 unless written in their common subset.

The plugin tiers run this file twice: under PyQt5 (``.venv``, ``pytest-fast``) and under PyQt6
(``.venv-qt6``, ``pytest-plugin-qt6``, ``DIFFUSION_LAYERS_QT=6``); the expected values are
computed here in plain Python, never by Qt, so both runs check against the same truth.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest
from diffusion_layers import pixels
from diffusion_layers.qt import (
    BINDING,
    ENV_VAR,
    QT_MAJOR,
    QByteArray,
    QRect,
    QtBindingError,
    choose_major,
)
from plugin_helpers import wait_until

WIDTHS = (1, 2, 3, 5, 7, 13)  # odd widths: 1-byte rows get padded to 4 bytes inside QImage


# -- the binding ---------------------------------------------------------------------------


def test_the_binding_asked_for_is_the_only_one_loaded() -> None:
    wanted = os.environ.get(ENV_VAR)
    if wanted:
        assert wanted == str(QT_MAJOR)
    other = "PyQt5" if QT_MAJOR == 6 else "PyQt6"
    assert f"{BINDING}.QtCore" in sys.modules
    assert not [m for m in sys.modules if m.split(".")[0] == other], f"{other} got imported"


class _Pykrita(ModuleType):
    def __init__(self, major: object = None) -> None:
        super().__init__("pykrita")
        if major is not None:
            self.qt_major_version = lambda: major


@pytest.mark.parametrize(
    ("environ", "pykrita", "loaded", "importable", "expected"),
    [
        ({ENV_VAR: "5"}, _Pykrita(6), {"PyQt6.QtCore"}, {"PyQt6.QtCore"}, 5),  # env wins
        ({ENV_VAR: " 6 "}, None, set(), set(), 6),
        ({}, _Pykrita(6), {"PyQt5.QtCore"}, {"PyQt5.QtCore"}, 6),  # Krita says so
        ({}, _Pykrita(5), set(), {"PyQt6.QtCore", "PyQt5.QtCore"}, 5),
        ({}, _Pykrita("6"), set(), set(), 6),
        ({}, _Pykrita("garbage"), {"PyQt6.QtCore"}, set(), 6),  # then what Krita loaded
        ({}, _Pykrita(), {"PyQt5.QtCore"}, {"PyQt6.QtCore"}, 5),  # Krita 5.1: no function
        # In Krita without an answer: PyQt5 first, even with a system PyQt6 around.
        ({}, _Pykrita(), set(), {"PyQt6.QtCore", "PyQt5.QtCore"}, 5),
        ({}, _Pykrita(), set(), {"PyQt6.QtCore"}, 6),
        # Outside Krita: PyQt6 first.
        ({}, None, set(), {"PyQt6.QtCore", "PyQt5.QtCore"}, 6),
        ({}, None, set(), {"PyQt5.QtCore"}, 5),
        ({}, None, {"PyQt5.QtCore"}, {"PyQt6.QtCore", "PyQt5.QtCore"}, 5),
    ],
)
def test_binding_choice_rule(environ, pykrita, loaded, importable, expected) -> None:
    assert choose_major(environ, pykrita, loaded, lambda name: name in importable) == expected


@pytest.mark.parametrize("value", ["4", "qt6", "PyQt6"])
def test_a_bad_environment_value_is_one_clear_sentence(value: str) -> None:
    with pytest.raises(QtBindingError, match=f"{ENV_VAR} is '{value}'; set it to 5"):
        choose_major({ENV_VAR: value}, None, set(), lambda _name: True)


# -- byte-exact pixels -----------------------------------------------------------------------


def _random(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


@pytest.mark.parametrize("width", WIDTHS)
def test_8_bit_bgra_round_trips_byte_exact_with_any_alpha(qapp, width: int) -> None:
    height = 3
    data = bytearray(_random(width * height * 4, width))
    data[3::4] = bytes(i * 37 % 256 for i in range(width * height))  # alpha 0 and 255 included
    data[0:4] = bytes([200, 100, 50, 0])  # colour under zero alpha survives (straight alpha)
    image = pixels.bgra_to_qimage(bytes(data), width, height)
    assert pixels.qimage_to_bgra(image) == bytes(data)
    assert image.pixelColor(0, 0).getRgb() == (50, 100, 200, 0)  # BGRA bytes are ARGB32


def test_mask_multiplies_alpha_exactly_and_keeps_colour_for_every_pair(qapp) -> None:
    # 256 x 256: every (alpha, mask) pair once, colours that premultiplying would round.
    data = bytes(v for a in range(256) for m in range(256) for v in (m, 255 - m, (a * 7) & 255, a))
    mask = bytes(range(256)) * 256
    out = pixels.apply_mask(data, mask, 256, 256)
    assert out[3::4] == bytes((a * m + 127) // 255 for a in range(256) for m in range(256))
    for channel in range(3):
        assert out[channel::4] == data[channel::4]


@pytest.mark.parametrize("width", WIDTHS)
def test_mask_of_odd_width(qapp, width: int) -> None:
    height = 3
    data = _random(width * height * 4, width + 7)
    mask = _random(width * height, width + 8)
    out = pixels.apply_mask(data, mask, width, height)
    assert out[3::4] == bytes((a * m + 127) // 255 for a, m in zip(data[3::4], mask, strict=True))
    with pytest.raises(pixels.PixelError, match=f"expected {width * height} for"):
        pixels.apply_mask(data, mask[:-1], width, height)


@pytest.mark.parametrize("width", WIDTHS)
def test_crop_gray_of_odd_width_reads_zero_outside(qapp, width: int) -> None:
    height = 4
    mask = _random(width * height, 300 + width)
    x0, y0, w, h = width // 2, 1, width + 2, 4  # runs past the right and bottom edges
    expected = bytes(
        mask[y * width + x] if x < width and y < height else 0
        for y in range(y0, y0 + h)
        for x in range(x0, x0 + w)
    )
    assert pixels.crop_gray(mask, width, height, QRect(x0, y0, w, h)) == expected


@pytest.mark.parametrize("width", (1, 7))
def test_png_round_trip_is_lossless(qapp, width: int) -> None:
    data = _random(width * 5 * 4, 400 + width)
    png = pixels.encode_png(pixels.bgra_to_qimage(data, width, 5))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert pixels.qimage_to_bgra(pixels.decode_image(png)) == data


def test_qbytearray_converts_to_the_same_bytes(qapp) -> None:
    raw = bytes(range(256)) + b"\0\0tail"
    array = QByteArray(raw)
    assert bytes(array.data()) == raw and bytes(array) == raw and array.size() == len(raw)


# -- network behaviour -----------------------------------------------------------------------


class _Redirecting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        if self.path == "/start":
            self.send_response(307)
            self.send_header("Location", "/target")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"followed"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    _Redirecting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed_on_either_binding(qapp, redirecting_server: str) -> None:
    """Qt 6 follows safe redirects by default and has no FollowRedirectsAttribute; the client
    sets the manual policy so both bindings behave as Qt 5 did."""
    from diffusion_layers.client import Client

    client = Client(redirecting_server)
    got: list[bytes] = []
    errors: list[object] = []
    client.fetch("/start", got.append, errors.append)
    wait_until(lambda: bool(got or errors), what="the redirect answer")
    assert _Redirecting.hits == ["/start"] and got == [b""] and not errors
