"""Random-weight models for the benchmark, written as diffusers folders under a models dir.

Full size: the real SD1.5 (UNet, inpaint 9-channel UNet, ControlNet, CLIP-L) and SDXL (UNet,
CLIP-L + OpenCLIP-bigG) architectures, built directly on the device in the benchmark dtype, so
timings match real checkpoints without downloading any. Tiny (``--tiny``): the engine's own
tiny configs (backend.engine.tiny), for CPU runs in CI.

Both the plain-diffusers baseline and our server load these very folders: the server through
its normal model loader (``<models>/checkpoints/<name>/``, ``<models>/controlnet/<name>/``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SD15 = "bench-sd15"
SD15_INPAINT = "bench-sd15-inpaint"
SDXL = "bench-sdxl"
CONTROLNET = "bench-sd15-canny"
FLUX_SCHNELL = "bench-flux1-schnell"
ZIMAGE = "bench-zimage-turbo"
FLUX2_KLEIN = "bench-flux2-klein"
QWEN_LAYERED = "bench-qwen-image-layered"
CHECKPOINTS = {
    SD15: ("sd15", False),
    SD15_INPAINT: ("sd15", True),
    SDXL: ("sdxl", False),
    FLUX_SCHNELL: ("flux1-schnell", False),
    ZIMAGE: ("zimage", False),
    FLUX2_KLEIN: ("flux2_klein", False),
    QWEN_LAYERED: ("qwen_image_layered", False),
}
#: transformer families: random-weight pipelines of their real sizes (bench_dit.py)
TRANSFORMER_MODELS = (FLUX_SCHNELL, ZIMAGE)
#: edit / layers families (issue #17): random-weight pipelines of their real sizes (bench_edit.py)
EDIT_MODELS = (FLUX2_KLEIN, QWEN_LAYERED)

# The architectures come from the configs the engine ships for real single-file checkpoints
# (backend/engine/configs/, whose parameter counts tests/engine/test_configs.py checks), so the
# benchmark times exactly what an artist's checkpoint loads as.
_CONFIGS = Path(__file__).resolve().parent.parent / "engine" / "configs"


@dataclass
class BenchModels:
    """Where the benchmark's models live: ``models_dir`` and one folder per name."""

    models_dir: Path
    tiny: bool

    def checkpoint(self, name: str) -> Path:
        return self.models_dir / "checkpoints" / name

    def controlnet(self, name: str = CONTROLNET) -> Path:
        return self.models_dir / "controlnet" / name


def _config_folder(family: str, inpaint: bool) -> Path:
    from backend.engine.loader import family_folder_name

    return _CONFIGS / family_folder_name(family, inpaint)


def build_full_pipeline(family: str, inpaint: bool, device: str, dtype: Any) -> Any:
    """A full-size SD1.5/SDXL pipeline with random weights, built on ``device`` in ``dtype``."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from backend.engine import families
    from backend.engine.tokenizer import load_clip_tokenizer

    spec = families.get(family)

    folder = _config_folder(family, inpaint)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        # fp16 VAE decode on both sides (no fp32 upcast), so plain and ours do the same work.
        vae_config = dict(AutoencoderKL.load_config(folder / "vae"), force_upcast=False)
        vae = AutoencoderKL.from_config(vae_config)
        parts: dict[str, Any] = {"unet": unet.to(dtype), "vae": vae.to(dtype)}
        for encoder in spec.text_encoders:
            config = CLIPTextConfig.from_pretrained(folder / encoder.component)
            model_class = CLIPTextModelWithProjection if encoder.pooled else CLIPTextModel
            parts[encoder.component] = model_class(config).to(dtype)
            parts[encoder.tokenizer] = load_clip_tokenizer(encoder.pad)
    scheduler_config = DPMSolverMultistepScheduler.load_config(folder / "scheduler")
    parts["scheduler"] = DPMSolverMultistepScheduler.from_config(scheduler_config)
    return getattr(diffusers, spec.base_pipeline)(**parts, **spec.init_kwargs)


def build_full_controlnet(device: str, dtype: Any) -> Any:
    import torch
    from diffusers import ControlNetModel

    config = ControlNetModel.load_config(_CONFIGS / "controlnet-sd15")
    torch.manual_seed(1)
    with torch.device(device):
        return ControlNetModel.from_config(config).to(dtype)


def _build(name: str, tiny: bool, device: str, dtype: Any) -> Any:
    family, inpaint = CHECKPOINTS[name]
    if name in EDIT_MODELS:
        from backend.bench.bench_edit import build_edit_pipeline

        return build_edit_pipeline(family, tiny, device, dtype)
    if name in TRANSFORMER_MODELS:
        from backend.bench.bench_dit import build_dit_pipeline

        return build_dit_pipeline(family, tiny, device, dtype)
    if tiny:
        from backend.engine.tiny import build_tiny_pipeline

        return build_tiny_pipeline(family, inpaint).to(dtype=dtype)
    return build_full_pipeline(family, inpaint, device, dtype)


def _save_whole(model: Any, target: Path) -> None:
    """Save into a sibling folder, then rename it into place: a run killed while writing (a
    scenario cut off by its deadline) never leaves a half-written folder that looks complete."""
    import shutil

    from backend.bench.disk import check_disk, mark_written

    check_disk(model, target)
    partial = target.parent.parent / ".partial" / f"{target.parent.name}-{target.name}"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    from backend.bench.bench_edit import finish_folder

    finish_folder(model, partial)
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(target)
    mark_written(target)


def ensure_models(
    models_dir: str | Path, *, tiny: bool, device: str, dtype: Any, names: list[str] | None = None
) -> BenchModels:
    """Write the benchmark models (the ones ``names`` needs) unless a folder is already there.

    A folder that already holds ``model_index.json`` (or ``config.json`` for the ControlNet) is
    used as is, so real weights can be benchmarked by placing them under these names.
    """
    import torch

    models = BenchModels(Path(models_dir), tiny)
    wanted = names if names is not None else [*CHECKPOINTS, CONTROLNET]
    for name in wanted:
        start = time.perf_counter()
        if name == CONTROLNET:
            target = models.controlnet(name)
            if (target / "config.json").is_file():
                continue
            if tiny:
                from backend.engine.tiny import build_tiny_controlnet

                net = build_tiny_controlnet("sd15").to(dtype=dtype)
            else:
                net = build_full_controlnet(device, dtype)
            _save_whole(net, target)
            del net
        else:
            target = models.checkpoint(name)
            if (target / "model_index.json").is_file():
                continue
            pipe = _build(name, tiny, device, dtype)
            _save_whole(pipe, target)
            del pipe
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("wrote %s (%.1f s)", target, time.perf_counter() - start)
    return models
