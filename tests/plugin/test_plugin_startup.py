"""Start-up when the plugin cannot run: the docker says why in one sentence, the log gets one line.

Each case imports the package in a fresh interpreter (registration happens at import, as in
Krita), with the fake ``krita`` and the binding under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from diffusion_layers.qt import BINDING, ENV_VAR, QT_MAJOR
from diffusion_layers.startup import DOCKER_ID, krita_problem, parse_version

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent.parent / "plugin"

SCRIPT = r"""
import importlib.abc, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import krita
from qt_binding import BINDING, QtWidgets
app = QtWidgets.QApplication(["startup-test"])
case = sys.argv[3]
if case == "old_krita":
    krita.Krita.VERSION = "4.4.8"
if case == "no_qtnetwork":  # e.g. a distribution that ships the binding without QtNetwork
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == BINDING + ".QtNetwork":
                raise ImportError("No module named %r" % name)
            return None
    sys.meta_path.insert(0, Block())
    sys.modules.pop(BINDING + ".QtNetwork", None)  # the fake krita's helper imported it
import diffusion_layers
k = krita.Krita.instance()
docker = k.dock_factories[0].klass() if k.dock_factories else None
label = docker.widget() if docker is not None else None
print(json.dumps({
    "factories": [f.id for f in k.dock_factories],
    "extensions": len(k.extensions()),
    "title": docker.windowTitle() if docker is not None else None,
    "text": label.text() if hasattr(label, "text") else None,
    "top": bool(label.alignment() & krita.Qt.AlignmentFlag.AlignTop) if hasattr(label, "text") else None,
}))
"""


def _start(case: str) -> tuple[dict, list[str]]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", **{ENV_VAR: str(QT_MAJOR)})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(HERE / "fake_krita"), str(PLUGIN), case],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    log = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith("QStandardPaths:")  # Qt's own offscreen noise
    ]
    return json.loads(done.stdout.strip().splitlines()[-1]), log


def test_normal_start_registers_the_real_docker_and_logs_nothing() -> None:
    state, log = _start("normal")
    assert state["factories"] == [DOCKER_ID] and state["extensions"] == 1
    assert state["title"] == "Diffusion Layers" and state["text"] is None  # the full panel
    assert log == []


def test_unusable_binding_is_one_sentence_in_the_docker_and_one_log_line() -> None:
    state, log = _start("no_qtnetwork")
    assert state["factories"] == [DOCKER_ID] and state["extensions"] == 0
    text = state["text"]
    assert text.startswith(f"Diffusion Layers could not load {BINDING} (No module named")
    assert "QtNetwork" in text and text.endswith("or set DIFFUSION_LAYERS_QT to the other binding.")
    assert log == [text]  # no traceback storm
    assert state["top"] is True


def test_too_old_krita_is_named_in_the_docker() -> None:
    state, log = _start("old_krita")
    assert state["factories"] == [DOCKER_ID] and state["extensions"] == 0
    assert state["text"] == (
        "Diffusion Layers needs Krita 5.1 or newer, but this is Krita 4.4.8: please update Krita."
    )
    assert log == [state["text"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.1.5", (5, 1)),
        ("5.3.0-prealpha (git 1a2b3c4)", (5, 3)),
        ("6.0.1", (6, 0)),
        ("10.2", (10, 2)),
        ("", None),
        ("unknown", None),
    ],
)
def test_parse_version(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("version", "python", "problem"),
    [
        ("5.1.5", (3, 8), None),
        ("5.2.9", (3, 10), None),
        ("6.0.0", (3, 12), None),
        ("git master", (3, 11), None),  # unknown: let it try
        ("5.0.8", (3, 8), "needs Krita 5.1 or newer, but this is Krita 5.0.8"),
        ("4.4.8", (3, 8), "needs Krita 5.1 or newer, but this is Krita 4.4.8"),
        ("5.1.0", (3, 7), "needs Python 3.8 or newer inside Krita, but this Krita runs Python 3.7"),
    ],
)
def test_krita_problem(version: str, python: tuple[int, int], problem: str | None) -> None:
    found = krita_problem(version, python)
    assert (found is None) if problem is None else (found is not None and problem in found)
