"""Disk space of the benchmark's random-weight models (backend/bench/disk.py): a model that
does not fit is refused before writing; an isolated run deletes the folders it wrote once no
later step needs them, never real weights placed under the benchmark's names."""

from __future__ import annotations

import pytest

from backend.bench.disk import MARKER, check_disk, drop_unneeded, mark_written
from backend.bench.weights import QWEN_LAYERED, SD15, SD15_INPAINT, BenchModels


def test_a_model_larger_than_the_free_disk_is_refused_with_the_sizes(tmp_path) -> None:
    import torch

    huge = torch.nn.Linear(1_000_000, 1_000_000, device="meta")  # 4 TB of float32
    with pytest.raises(
        RuntimeError, match=r"models_dir=.*writing huge needs about 400[0-9] GB free and only"
    ):
        check_disk(huge, tmp_path / "models" / "checkpoints" / "huge")
    check_disk(torch.nn.Linear(4, 4), tmp_path / "models" / "checkpoints" / "small")


def test_written_folders_go_once_no_later_step_needs_them(tmp_path) -> None:
    models = BenchModels(tmp_path, tiny=False)
    for name in (SD15, SD15_INPAINT, QWEN_LAYERED):
        models.checkpoint(name).mkdir(parents=True)
        (models.checkpoint(name) / "model_index.json").write_text("{}")
    for name in (SD15, QWEN_LAYERED):
        mark_written(models.checkpoint(name))
    # SD15_INPAINT holds real weights (no marker): it stays although no later step needs it.
    done = ["sd15_inpaint_512", "sd15_txt2img_512", "qwen_layered_1024"]
    dropped = drop_unneeded(tmp_path, done, ["transfer_2048"])  # transfer loads SD15
    assert dropped == [models.checkpoint(QWEN_LAYERED)]
    assert models.checkpoint(SD15).is_dir() and models.checkpoint(SD15_INPAINT).is_dir()
    assert not models.checkpoint(QWEN_LAYERED).exists()
    assert drop_unneeded(tmp_path, ["transfer_2048"], []) == [models.checkpoint(SD15)]
    assert not (models.checkpoint(SD15_INPAINT) / MARKER).exists()
    assert drop_unneeded(None, done, []) == []
