"""What a scenario works with: documents, painting, selections, our plugin's state, the harness.

Scenarios are generators; they ``yield`` a :class:`Wait` whenever they need the event loop to
run (a generation, a layer to appear), and the runner resumes them from a QTimer.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from krita import Krita, Selection
from PyQt5.QtCore import QByteArray
from PyQt5.QtWidgets import QApplication

from . import probes

PLUGIN_ACTIONS = (
    "diffusion_layers_generate",
    "diffusion_layers_cancel",
    "diffusion_layers_apply",
    "diffusion_layers_apply_all",
    "diffusion_layers_toggle_live",
    "diffusion_layers_upscale",
    "diffusion_layers_decompose",
)
PREVIEW_PREFIX = "[Preview]"


class ScenarioFailed(AssertionError):
    """A scenario could not go on (the pytest side asserts on the recorded data instead)."""


class Wait:
    """Resume the scenario once ``predicate()`` is truthy; fail after ``timeout_s``."""

    def __init__(self, what: str, predicate, timeout_s: float) -> None:
        self.what = what
        self.predicate = predicate
        self.timeout_s = timeout_s


def sleep(seconds: float) -> Wait:
    deadline = time.monotonic() + seconds
    return Wait(f"sleep {seconds}s", lambda: time.monotonic() >= deadline, seconds + 5)


class Context:
    def __init__(self, name: str, artifacts_dir: str, control_dir: str, log) -> None:
        self.name = name
        self.app = Krita.instance()
        self.artifacts_dir = artifacts_dir
        self.control_dir = control_dir
        self.data: dict = {}
        self.log = log
        self._requests = 0

    # 1. Documents and painting ---------------------------------------------------------

    def new_document(self, width: int, height: int, name: str, fill=None):
        """A document with a view; ``fill`` paints its bottom layer with a test pattern."""
        doc = self.app.createDocument(width, height, name, "RGBA", "U8", "", 72.0)
        window = self.app.activeWindow()
        window.addView(doc)
        self.app.setActiveDocument(doc)
        if fill is not None:
            bottom = doc.rootNode().childNodes()[0]
            bottom.setPixelData(QByteArray(fill(width, height)), 0, 0, width, height)
        doc.refreshProjection()
        doc.waitForDone()
        return doc

    def add_paint_layer(self, doc, name: str, rect: list[int], bgra: tuple) -> object:
        """A paint layer named ``name`` with an opaque ``bgra`` rectangle at ``rect``."""
        node = doc.createNode(name, "paintlayer")
        doc.rootNode().addChildNode(node, None)
        x, y, w, h = rect
        node.setPixelData(QByteArray(bytes(bgra) * (w * h)), x, y, w, h)
        doc.refreshProjection()
        doc.waitForDone()
        return node

    def activate(self, doc, node) -> Wait:
        """Make ``node`` the active layer; recorded (not fatal) when Krita does not follow."""
        doc.setActiveNode(node)
        key = probes.node_id(node)
        deadline = time.monotonic() + 3

        def done() -> bool:
            active = doc.activeNode()
            if active is not None and probes.node_id(active) == key:
                return True
            if time.monotonic() > deadline:
                self.data["activation_failed"] = node.name()
                return True
            return False

        return Wait(f"{node.name()} active", done, 10)

    def select(self, doc, mask: bytes, rect: list[int]):
        selection = Selection()
        x, y, w, h = rect
        selection.setPixelData(QByteArray(mask), x, y, w, h)
        doc.setSelection(selection)
        doc.waitForDone()
        return selection

    def close_all(self) -> None:
        for doc in list(self.app.documents()):
            doc.setBatchmode(True)
            doc.setModified(False)
            doc.close()

    # 2. Our plugin ------------------------------------------------------------------

    def trigger(self, action_id: str) -> None:
        action = self.app.action(action_id)
        if action is None:
            raise ScenarioFailed(f"Krita has no action {action_id!r}: is the plugin loaded?")
        self.log(f"trigger {action_id}")
        action.trigger()

    def controller(self):
        """The plugin's controller: ``diffusion_layers.extension.controller()`` (the plugin's
        public hook), else an extension's/docker's ``controller`` attribute."""
        module = sys.modules.get("diffusion_layers.extension")
        hook = getattr(module, "controller", None)
        if callable(hook):
            found = hook()
            if found is not None:
                return found
        owners = [*self.app.extensions(), *self.app.dockers()]
        owners += [getattr(owner, "app", None) for owner in owners]
        owners += [getattr(owner, "panel", None) for owner in self.app.dockers()]
        for owner in owners:
            found = getattr(owner, "controller", None)
            if callable(found) and not hasattr(found, "state"):
                found = found()
            if found is not None and hasattr(found, "state"):
                return found
        return None

    def docker(self):
        for dock in self.app.dockers():
            label = f"{dock.objectName()} {dock.windowTitle()}".lower()
            if "diffusion" in label:
                return dock
        return None

    def state(self) -> str | None:
        return _text(getattr(self.controller(), "state", None))

    def last_error(self) -> str | None:
        return _text(getattr(self.controller(), "last_error", None))

    def results_count(self) -> int | None:
        results = getattr(self.controller(), "results", None)
        return None if results is None else len(results)

    def wait_state(self, states: tuple, timeout_s: float) -> Wait:
        return Wait(f"plugin state in {states}", lambda: self.state() in states, timeout_s)

    def docker_texts(self) -> list[str]:
        dock = self.docker()
        return probes.widget_texts(dock) if dock is not None else []

    # 3. Artifacts and the harness ---------------------------------------------------

    def screenshot(self, label: str) -> str:
        """Grab the main window (dockers included) as a PNG in the artifacts folder."""
        window = self.app.activeWindow().qwindow()
        dock = self.docker()
        if dock is not None:
            dock.show()
            dock.raise_()
        QApplication.processEvents()
        path = os.path.join(self.artifacts_dir, f"{self.name}-{label}.png")
        window.grab().save(path, "PNG")
        self.data.setdefault("screenshots", []).append(path)
        return path

    def harness(self, command: str, timeout_s: float = 120) -> Wait:
        """Ask the pytest side to do something (``backend_stop``, ``backend_start``)."""
        if not self.control_dir:
            raise ScenarioFailed("no DL_E2E_CONTROL folder: the harness cannot be reached")
        self._requests += 1
        stem = os.path.join(self.control_dir, f"{self.name}-{self._requests}-{command}")
        with open(stem + ".tmp", "w", encoding="utf-8") as handle:
            json.dump({"command": command}, handle)
        os.replace(stem + ".tmp", stem + ".cmd")
        self.log(f"harness request {command}")
        return Wait(f"harness {command}", lambda: _read_done(stem + ".done"), timeout_s)


def _read_done(path: str):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        result = json.load(handle)
    if not result.get("ok"):
        raise ScenarioFailed(f"harness request failed: {result.get('error')}")
    return result


def _text(value) -> str | None:
    if value is None:
        return None
    if callable(value):
        value = value()
    value = getattr(value, "value", value)
    return None if value is None else str(value)


# 4. Test patterns (BGRA bytes) -----------------------------------------------------------


def gradient(width: int, height: int) -> bytes:
    """Opaque diagonal colour gradient with a checker, so every region differs."""
    rows = []
    for y in range(height):
        g = y * 255 // max(1, height - 1)
        row = bytearray(width * 4)
        for x in range(width):
            checker = 40 if ((x // 16) + (y // 16)) % 2 else 0
            row[x * 4 : x * 4 + 4] = bytes(
                ((x * 255 // max(1, width - 1)) ^ checker, g, (x + y) % 256, 255)
            )
        rows.append(bytes(row))
    return b"".join(rows)


def rect_mask(w: int, h: int) -> bytes:
    return b"\xff" * (w * h)


def ellipse_mask(w: int, h: int, feather: float) -> bytes:
    """An ellipse filling (w, h) with a soft edge ``feather`` px wide."""
    cx, cy = (w - 1) / 2, (h - 1) / 2
    rx, ry = w / 2, h / 2
    out = bytearray(w * h)
    for y in range(h):
        for x in range(w):
            dx, dy = (x - cx) / rx, (y - cy) / ry
            dist = (1 - math.sqrt(dx * dx + dy * dy)) * min(rx, ry)
            out[y * w + x] = max(0, min(255, int(255 * dist / feather)))
    return bytes(out)
