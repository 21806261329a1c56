"""Hub ids load from the Hugging Face cache offline, for every kind of family: the shared SD
loader (a diffusers folder) and a transformer family's own load hook (Z-Image)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.engine.errors import ModelNotFound
from backend.engine.families import dit_files
from backend.engine.loader import load_checkpoint
from backend.engine.tiny import build_tiny_pipeline

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache, offline: ``snapshot_download(local_files_only=True)`` reads it."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_snapshot(cache: Path, repo_id: str) -> Path:
    """The folder a cached snapshot of ``repo_id`` lives in, with refs/main pointing at it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    folder = repo / "snapshots" / COMMIT
    folder.mkdir(parents=True)
    return folder


def test_an_sd_hub_id_loads_from_the_cache(hub_cache: Path) -> None:
    folder = cache_snapshot(hub_cache, "someone/tiny-sd15")
    build_tiny_pipeline("sd15").save_pretrained(str(folder), safe_serialization=True)
    loaded = load_checkpoint("someone/tiny-sd15", device="cpu", dtype=torch.float32)
    assert loaded.family == "sd15" and loaded.pipe.unet is not None


def test_a_transformer_family_hub_id_loads_through_its_own_hook(hub_cache: Path) -> None:
    folder = cache_snapshot(hub_cache, "someone/tiny-zimage")
    dit_files.write_diffusers_folder(folder, "zimage")
    loaded = load_checkpoint("someone/tiny-zimage", device="cpu", dtype=torch.float32)
    assert loaded.family == "zimage" and type(loaded.pipe).__name__ == "ZImagePipeline"


def test_a_hub_id_missing_from_the_cache_offline_says_so(hub_cache: Path) -> None:
    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache"):
        load_checkpoint("someone/not-downloaded", device="cpu", dtype=torch.float32)
