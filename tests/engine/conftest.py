"""Shared engine fixtures: the tiny built-in models, written once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread: on the shared 2-core CI machines, torch's default thread pool spins
# against the other processes and makes a 0.1 s tiny generation take seconds.
torch.set_num_threads(int(os.environ.get("DL_TEST_TORCH_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models_dir holding checkpoints/, controlnet/ and lora/ with every tiny built-in
    (tiny, tiny-inpaint, tiny-sdxl, tiny-sdxl-inpaint, tiny-controlnet,
    tiny-sdxl-controlnet, tiny-lora) as single .safetensors files."""
    from backend.engine.tiny import ensure_tiny_models

    directory = tmp_path_factory.mktemp("tiny-models")
    ensure_tiny_models(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_paths(tiny_models_dir: Path) -> dict[str, str]:
    """``{name: file path}`` of every tiny built-in (the files already exist)."""
    from backend.engine.tiny import ensure_tiny_models

    return ensure_tiny_models(tiny_models_dir)
