"""The controller against a REAL backend process (tiny model on CPU), through fake Krita.

Skipped, loudly, when the backend's serve command cannot be imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import krita
import pytest
from diffusion_layers.client import Client
from diffusion_layers.controller import Controller
from diffusion_layers.krita_adapter import KritaCanvas, KritaSettingsStore
from plugin_helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUP = "diffusion_layers"

if importlib.util.find_spec("backend.commands.serve") is None:  # pragma: no cover
    pytest.skip(
        "REAL-BACKEND PLUGIN TESTS SKIPPED: backend.commands.serve is not importable yet",
        allow_module_level=True,
    )


def _backend_python() -> str:
    """The interpreter that runs the backend process: ``DL_BACKEND_PYTHON``, else this one when
    it has torch. The PyQt6 plugin tier runs in a venv without torch and points it at the
    main venv: the backend is a separate process in real use too."""
    chosen = os.environ.get("DL_BACKEND_PYTHON", "")
    if chosen:
        return chosen
    if importlib.util.find_spec("torch") is None:  # pragma: no cover
        pytest.skip(
            "REAL-BACKEND PLUGIN TESTS SKIPPED: no torch in this venv and DL_BACKEND_PYTHON"
            " is not set (install/test.sh sets it for the PyQt6 tier)",
            allow_module_level=True,
        )
    return sys.executable


BACKEND_PYTHON = _backend_python()
# DL_CLUSTER_BACKEND=1 (the cluster tier): the same tests against `serve --cluster`, a local Ray
# Serve application with two generation replicas (docs/cluster.md).
CLUSTER_ARGS = ["--cluster", "--replicas", "2"] if os.environ.get("DL_CLUSTER_BACKEND") else []
START_S = 300 if CLUSTER_ARGS else 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def backend_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    out = tmp_path_factory.mktemp("outputs")
    log = open(out / "server.log", "wb")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [
            BACKEND_PYTHON,
            "-m",
            "backend",
            "serve",
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--port",
            str(port),
            "--output-dir",
            str(out),
            "--keepalive-s",
            "1",
            *CLUSTER_ARGS,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"backend exited with {proc.returncode}: {(out / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url + "/v1/health", timeout=2) as r:
                    if json.loads(r.read()).get("status") != "error":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"backend did not answer /v1/health within {START_S} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def ctl(fake_krita: krita.Krita, backend_url: str) -> Controller:
    for key, value in {
        "server_url": backend_url,
        "steps": "2",
        "seed": "7",
        "prompt": "a tiny test",
    }.items():
        fake_krita.writeSetting(GROUP, key, value)
    return Controller(KritaCanvas(), Client(backend_url), KritaSettingsStore())


def _finish(ctl: Controller) -> None:
    wait_until(lambda: ctl.state != "generating", timeout=120, what="the real backend job")
    assert ctl.state == "preview", ctl.last_error


def test_real_backend_txt2img_then_apply(ctl: Controller, fake_krita: krita.Krita) -> None:
    doc = fake_krita.createDocument(64, 64, "real", "RGBA", "U8", "", 72.0)
    ctl.connect_server()
    wait_until(
        lambda: ctl.connection.models is not None or ctl.connection.state == "error", timeout=60
    )
    assert ctl.connection.state == "connected", ctl.connection.message
    assert ctl.generate()
    _finish(ctl)
    assert ctl.used_seed == 7
    layer_id = ctl.apply()
    assert layer_id
    layer = doc.nodeByName("a tiny test #7")
    data = bytes(layer.pixelData(0, 0, 64, 64))
    assert len(set(data[3::4])) >= 1 and data[3::4].count(255) == 64 * 64  # opaque result
    assert len(set(data[0::4])) > 1  # not a flat colour


def test_real_backend_inpaint_keeps_outside_selection_transparent(
    ctl: Controller, fake_krita: krita.Krita
) -> None:
    doc = fake_krita.createDocument(96, 96, "real", "RGBA", "U8", "", 72.0)
    doc.nodeByName("Background").setPixelData(bytes([30, 60, 90, 255]) * (96 * 96), 0, 0, 96, 96)
    sel = krita.Selection()
    sel.setPixelData(b"\xff" * (24 * 24), 36, 36, 24, 24)
    doc.setSelection(sel)
    assert ctl.generate()
    _finish(ctl)
    ctl.apply()
    layer = doc.nodeByName("a tiny test #7")
    assert bytes(layer.pixelData(48, 48, 1, 1))[3] > 0
    assert bytes(layer.pixelData(0, 0, 1, 1))[3] == 0


def test_real_backend_unknown_model_is_reported(ctl: Controller, fake_krita: krita.Krita) -> None:
    doc = fake_krita.createDocument(64, 64, "real", "RGBA", "U8", "", 72.0)
    ctl.update_settings(model="no-such-model")
    ctl.generate()
    wait_until(lambda: ctl.state != "generating", timeout=60)
    assert ctl.state == "error"
    assert "no-such-model" in ctl.last_error
    assert [n.name() for n in doc.all_nodes()] == ["Background"]
