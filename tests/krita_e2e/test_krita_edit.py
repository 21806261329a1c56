"""Edit by instruction and Decompose into Layers in real Krita (#17).

One launch against the real backend (CPU) whose models folder holds tiny FLUX.2 klein and
Qwen-Image-Layered checkpoints written by the family helpers' writers (ComfyUI layout, loaded
through the real inventory and loaders): a selection edited with one reference layer, and a
512x512 canvas decomposed into 3 layers (one group, one undo step).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .backend_proc import REPO, BackendProcess
from .conftest import plugin_settings

SCENARIOS = ["edit_reference", "decompose_512"]


class ModelsBackend(BackendProcess):
    """``serve --model tiny --models-dir <dir>``: the tiny SD models plus the folder's files."""

    def __init__(self, workdir, models_dir) -> None:
        super().__init__(workdir)
        self.models_dir = models_dir

    def start(self, timeout_s: float = 240.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        command = [
            sys.executable, "-m", "backend", "serve", "--model", "tiny", "--device", "cpu",
            "--host", "127.0.0.1", "--port", str(self.port), "--output-dir", str(self.output_dir),
            "--models-dir", str(self.models_dir),
        ]  # fmt: skip
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._wait_ready(timeout_s)


@pytest.fixture(scope="module")
def edit_backend(krita_available, tmp_path_factory):
    from backend.engine.families.tiny_flux2 import write_tiny_flux2_klein
    from backend.engine.families.tiny_qwen import write_tiny_qwen_image

    models = tmp_path_factory.mktemp("edit-models")
    assert write_tiny_flux2_klein(models) == "tiny_flux2_klein"
    assert write_tiny_qwen_image(models, "layered") == "tiny_qwen_image_layered"
    backend = ModelsBackend(tmp_path_factory.mktemp("edit-backend"), models)
    try:
        backend.start()
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def run(launch_krita, edit_backend):
    settings = plugin_settings(edit_backend.url, steps="2", cfg_scale="1.0")
    return launch_krita("edit", SCENARIOS, settings, edit_backend, timeout_s=600)


def test_edit_a_selection_with_one_reference_layer_adds_one_layer_over_it(run):
    data = run.scenario("edit_reference")
    sent = data["sent"]
    assert sent["mode"] == "edit" and sent["prompt"] == "put the cup from on the table", sent
    assert [(c["type"], c["model"]) for c in sent["controls"]] == [("reference", None)], sent
    assert data["state_after"] == "idle" and not data["error"], data
    layers = data["new_layers"]
    assert len(layers) == 1 and layers[0]["type"] == "paintlayer", layers
    assert layers[0]["bounds"] == data["selection"], layers  # transparent outside it


def test_decompose_a_512_canvas_into_3_layers_is_one_group_undone_in_one_step(run):
    data = run.scenario("decompose_512")
    assert data["before"] == ["Background", "Top"], data
    above = data["before"].index(data["active"]) + 1  # directly above the active layer
    expected = data["before"][:above] + ["Decomposed (3 layers)"] + data["before"][above:]
    assert data["after"] == expected, data
    (group,) = data["groups"]
    assert group["name"] == "Decomposed (3 layers)", group
    children = group["children"]
    assert [k["name"] for k in children] == ["Layer 1 of 3", "Layer 2 of 3", "Layer 3 of 3"]
    assert all(k["type"] == "paintlayer" for k in children), children
    for child in children:  # each layer inside the canvas (its own alpha, not a rectangle)
        x, y, w, h = child["bounds"]
        assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512, child
    assert data["after_undo"] == ["Background", "Top"], data
    assert data["groups_after_undo"] == [], data
