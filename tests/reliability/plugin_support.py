"""Driving the real plugin Controller through fake Krita documents (as tests/plugin does)."""

from __future__ import annotations

import time
from collections.abc import Callable

GROUP = "diffusion_layers"


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"):
    """Run the Qt event loop until predicate() holds; the plugin is asynchronous."""
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance()
    assert app is not None
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        app.processEvents()
        time.sleep(0.002)


def pump(seconds: float) -> None:
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance()
    assert app is not None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.002)


def make_controller(app, url: str, **settings: str):
    from diffusion_layers.client import Client
    from diffusion_layers.controller import Controller
    from diffusion_layers.krita_adapter import KritaCanvas, KritaSettingsStore

    app.writeSetting(GROUP, "server_url", url)
    app.writeSetting(GROUP, "steps", "2")
    for key, value in settings.items():
        app.writeSetting(GROUP, key, value)
    return Controller(KritaCanvas(), Client(url), KritaSettingsStore())


def new_doc(app, fill: bytes | None = None, size: tuple[int, int] = (64, 64)):
    doc = app.createDocument(size[0], size[1], "test", "RGBA", "U8", "", 72.0)
    if fill is not None:
        node = doc.nodeByName("Background")
        node.setPixelData(fill * (size[0] * size[1]), 0, 0, size[0], size[1])
    return doc


def names(doc) -> list[str]:
    return [n.name() for n in doc.all_nodes()]


def pixel(node, x: int, y: int) -> bytes:
    return bytes(node.pixelData(x, y, 1, 1))
