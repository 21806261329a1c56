"""Disk space of the benchmark's random-weight models: check before writing one, and delete
those no later step of an isolated run needs.

Full size, the models take more than a GPU machine's disk holds at once (Flux.1 ~24 GB,
Z-Image ~20 GB, FLUX.2 klein ~16 GB, Qwen-Image-Layered ~58 GB, SD1.5/SDXL ~11 GB), so
``bench --isolate`` deletes a model's folder once the steps that use it are done. Only folders
the benchmark wrote itself (they hold ``MARKER``) are ever deleted: real weights placed under
the benchmark's names stay.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER = ".dl-bench-random-weights"
SPARE_BYTES = 2 * 1024**3


def weight_bytes(model: Any) -> int:
    """Bytes of a pipeline's (or one model's) parameters and buffers: about what saving it
    writes."""
    import torch

    modules = [model] if isinstance(model, torch.nn.Module) else list(model.components.values())
    total = 0
    for module in modules:
        if isinstance(module, torch.nn.Module):
            for tensor in (*module.parameters(), *module.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


def check_disk(model: Any, target: Path) -> None:
    """Refuse (RuntimeError) to write ``model`` to ``target`` where it does not fit with 2 GB to
    spare: a full disk would fail the write halfway and starve every later step."""
    need = weight_bytes(model) + SPARE_BYTES
    root = target
    while not root.exists() and root != root.parent:
        root = root.parent
    free = shutil.disk_usage(root).free
    if free < need:
        raise RuntimeError(
            f"models_dir={str(target.parent.parent)!r}: writing {target.name} needs about "
            f"{need / 1e9:.0f} GB free and only {free / 1e9:.0f} GB are: free some space or "
            "give --models-dir on a larger disk"
        )


def mark_written(folder: Path) -> None:
    """Mark ``folder`` as random weights the benchmark wrote (deletable by ``drop_written``)."""
    (folder / MARKER).write_text("random weights written by diffusion-layers bench\n")


def drop_written(folders: Iterable[Path]) -> list[Path]:
    """Delete those of ``folders`` that hold ``MARKER``; returns the deleted ones."""
    dropped = []
    for folder in folders:
        if (folder / MARKER).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            dropped.append(folder)
            log.info("deleted %s (random weights no later step needs)", folder)
    return dropped


def step_folders(models_dir: Path, steps: Iterable[str]) -> set[Path]:
    """The model folders under ``models_dir`` that the bench steps ``steps`` (scenario names,
    ``transfer_2048``, ``accel``) load."""
    from backend.bench.scenarios import SCENARIOS, TRANSFER
    from backend.bench.weights import CONTROLNET, SD15, BenchModels

    models = BenchModels(models_dir, tiny=False)
    by_name = {s.name: s for s in SCENARIOS}
    folders: set[Path] = set()
    for step in steps:
        if step == TRANSFER:
            folders.add(models.checkpoint(SD15))
        scenario = by_name.get(step)
        if scenario is not None:
            folders.add(models.checkpoint(scenario.model))
            if scenario.controlnet:
                folders.add(models.controlnet(CONTROLNET))
    return folders


def drop_unneeded(models_dir: str | Path | None, done: list[str], later: list[str]) -> list[Path]:
    """Delete the random-weight folders the steps in ``done`` used and none in ``later`` needs;
    returns the deleted ones."""
    if models_dir is None:
        return []
    root = Path(models_dir)
    return drop_written(step_folders(root, done) - step_folders(root, later))
