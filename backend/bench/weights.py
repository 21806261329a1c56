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
CHECKPOINTS = {SD15: ("sd15", False), SD15_INPAINT: ("sd15", True), SDXL: ("sdxl", False)}

_SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
_SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
_VAE: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
_CLIP_L: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
_CLIP_BIG_G: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}
_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}


@dataclass
class BenchModels:
    """Where the benchmark's models live: ``models_dir`` and one folder per name."""

    models_dir: Path
    tiny: bool

    def checkpoint(self, name: str) -> Path:
        return self.models_dir / "checkpoints" / name

    def controlnet(self, name: str = CONTROLNET) -> Path:
        return self.models_dir / "controlnet" / name


def _full_configs(family: str, inpaint: bool) -> dict[str, Any]:
    unet = dict(_SD15_UNET if family == "sd15" else _SDXL_UNET, in_channels=9 if inpaint else 4)
    vae = dict(_VAE)
    if family == "sdxl":
        vae.update(sample_size=1024, scaling_factor=0.13025, force_upcast=False)
    return {"unet": unet, "vae": vae, "text_encoder": dict(_CLIP_L), "scheduler": _SCHEDULER}


def _text_config(extra: dict[str, Any]) -> Any:
    from transformers import CLIPTextConfig

    base = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406}
    return CLIPTextConfig(**base, eos_token_id=49407, **{"pad_token_id": 1, **extra})


def build_full_pipeline(family: str, inpaint: bool, device: str, dtype: Any) -> Any:
    """A full-size SD1.5/SDXL pipeline with random weights, built on ``device`` in ``dtype``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from backend.engine.tokenizer import load_clip_tokenizer

    configs = _full_configs(family, inpaint)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**configs["unet"]).to(dtype)
        vae = AutoencoderKL(**configs["vae"]).to(dtype)
        text_encoder = CLIPTextModel(_text_config(_CLIP_L)).to(dtype)
        text_encoder_2 = None
        if family == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(_text_config(_CLIP_BIG_G)).to(dtype)
    scheduler = DPMSolverMultistepScheduler(**configs["scheduler"])
    parts = dict(vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(), unet=unet)
    if family == "sd15":
        return StableDiffusionPipeline(
            **parts,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        **parts,
        text_encoder_2=text_encoder_2,
        tokenizer_2=load_clip_tokenizer("bang"),
        scheduler=scheduler,
    )


def build_full_controlnet(device: str, dtype: Any) -> Any:
    import torch
    from diffusers import ControlNetModel

    dropped = ("out_channels", "up_block_types", "sample_size")
    config = {k: v for k, v in _SD15_UNET.items() if k not in dropped}
    torch.manual_seed(1)
    with torch.device(device):
        return ControlNetModel(**config).to(dtype)


def _build(name: str, tiny: bool, device: str, dtype: Any) -> Any:
    family, inpaint = CHECKPOINTS[name]
    if tiny:
        from backend.engine.tiny import build_tiny_pipeline

        return build_tiny_pipeline(family, inpaint).to(dtype=dtype)
    return build_full_pipeline(family, inpaint, device, dtype)


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
            net.save_pretrained(target, safe_serialization=True)
            del net
        else:
            target = models.checkpoint(name)
            if (target / "model_index.json").is_file():
                continue
            pipe = _build(name, tiny, device, dtype)
            pipe.save_pretrained(target, safe_serialization=True)
            del pipe
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.info("wrote %s (%.1f s)", target, time.perf_counter() - start)
    return models
