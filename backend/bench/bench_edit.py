"""Random-weight FLUX.2 klein 4B and Qwen-Image-Layered pipelines for the benchmark's edit and
layers scenarios (``flux2_klein_edit_1024``, ``qwen_layered_1024``; issue #17).

Full size: the real architectures, built on the device in the benchmark dtype, so timings match
the real checkpoints without downloading them:

- FLUX.2 klein 4B (distilled): the double/single-stream transformer (5 double, 20 single
  blocks, 24 heads of 128, fed by three stacked hidden states of Qwen3-4B: 3 x 2560), Qwen3-4B,
  the FLUX.2 VAE (32 latent channels). About 3.9B + 4.0B parameters, ~16 GB in bf16.
- Qwen-Image-Layered: the 20B Qwen-Image MMDiT (60 blocks, 24 heads of 128) with Layered's
  extra time condition and layer-3D RoPE, Qwen2.5-VL-7B (text and vision tower), the RGBA
  Qwen-Image VAE. About 20.4B + 8.3B parameters, ~58 GB in bf16: writing it needs that much
  free disk in the models folder (``weights.ensure_models`` checks before writing).

The tokenizers are the tiny ones built in code (as bench_dit.py does for Flux.1/Z-Image): both
sides run the same token count, so plain and ours do the same work. Layered's folder is laid
out like the Hub repository (``finish_folder``: model_index.json naming ``Qwen2VLProcessor``,
the image processor's settings in ``processor/``, Qwen2.5-VL's pixel limits at full size), as
the engine's folder loader reads it; the scenario gives a prompt, so neither side captions.
Tiny (``--tiny``): the engine's tiny FLUX.2 klein and Qwen-Image-Layered (64 px, CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: FLUX.2 klein 4B's transformer (black-forest-labs/FLUX.2-klein-4B, transformer/config.json)
KLEIN_4B_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "out_channels": None,
    "num_layers": 5,
    "num_single_layers": 20,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": [32, 32, 32, 32],
    "rope_theta": 2000,
    "eps": 1e-6,
    "guidance_embeds": False,
}
#: Qwen-Image-Layered's transformer (Qwen-Image's 20B MMDiT plus Layered's RGBA time condition
#: and layer-3D RoPE)
LAYERED_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": [16, 56, 56],
    "use_additional_t_cond": True,
    "use_layer3d_rope": True,
}
#: the RGBA Qwen-Image VAE (AutoencoderKLQwenImage's defaults are Qwen-Image's; 4 input channels)
LAYERED_VAE: dict[str, Any] = {"input_channels": 4}
#: Qwen2.5-VL's image processor limits (preprocessor_config.json of the Qwen-Image repos)
QWEN25VL_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}


def is_layered(family: str) -> bool:
    """Whether ``family`` is the decomposing one (a Family with ``decompose``) or the editing
    one (FLUX.2 klein)."""
    from backend.engine import families

    return families.get(family).decompose is not None


def build_edit_pipeline(family: str, tiny: bool, device: str, dtype: Any) -> Any:
    """The benchmark pipeline of ``family``: a Flux2KleinPipeline or a
    QwenImageLayeredPipeline (tiny: 64 px native, marked ``dl_native_size`` as bench_dit does)."""
    if is_layered(family):
        pipe = _tiny_layered() if tiny else _full_layered(device, dtype)
    else:
        pipe = _tiny_klein() if tiny else _full_klein(device, dtype)
    if tiny:
        pipe.transformer.register_to_config(dl_native_size=64)
        return pipe.to(dtype=dtype)
    return pipe


def _tiny_klein() -> Any:
    from backend.engine.families.tiny_flux2 import build_pipeline

    return build_pipeline(distilled=True)


def _tiny_layered() -> Any:
    import diffusers

    from backend.engine.families import tiny_qwen

    tokenizer = tiny_qwen.build_tokenizer()
    return diffusers.QwenImageLayeredPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**tiny_qwen.scheduler_config()),
        vae=tiny_qwen.build_vae(rgba=True),
        text_encoder=tiny_qwen.build_text_encoder(tokenizer),
        tokenizer=tokenizer,
        processor=tiny_qwen.build_processor(tokenizer),
        transformer=tiny_qwen.build_transformer("layered"),
    )


def _full_klein(device: str, dtype: Any) -> Any:
    import diffusers
    import torch
    from transformers import Qwen3Config, Qwen3Model

    from backend.bench.bench_dit import QWEN3_4B
    from backend.engine.families.flux2_load import full_vae_config
    from backend.engine.families.tiny_flux2 import SCHEDULER
    from backend.engine.families.tiny_text import build_qwen_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        transformer = diffusers.Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER).to(dtype)
        text_encoder = Qwen3Model(Qwen3Config(**QWEN3_4B)).to(dtype)
        vae = diffusers.AutoencoderKLFlux2(**full_vae_config()).to(dtype)
    return diffusers.Flux2KleinPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_qwen_tokenizer(),
        transformer=transformer,
        is_distilled=True,
    )


def _full_layered(device: str, dtype: Any) -> Any:
    import diffusers
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from backend.engine.families import tiny_qwen
    from backend.engine.families.qwen_loader import QWEN25VL_7B

    torch.manual_seed(0)
    with torch.device(device):
        transformer = diffusers.QwenImageTransformer2DModel(**LAYERED_TRANSFORMER).to(dtype)
        text_config = Qwen2_5_VLConfig(**QWEN25VL_7B)
        text_encoder = Qwen2_5_VLForConditionalGeneration(text_config).to(dtype)
        vae = diffusers.AutoencoderKLQwenImage(**LAYERED_VAE).to(dtype)
    tokenizer = tiny_qwen.build_tokenizer()
    return diffusers.QwenImageLayeredPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**tiny_qwen.scheduler_config()),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=tiny_qwen.build_processor(tokenizer, QWEN25VL_PIXELS),
        transformer=transformer,
    )


def finish_folder(pipe: Any, folder: Path) -> None:
    """After ``pipe.save_pretrained(folder)``: a Qwen-Image pipeline's processor as the Hub
    repositories hold it (model_index.json names ``Qwen2VLProcessor``; ``processor/`` has the
    image processor's ``preprocessor_config.json``). Other pipelines: nothing to do."""
    processor = getattr(pipe, "vl_processor", None)
    if processor is None:
        return
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text("utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2), "utf-8")
    processor.image_processor.save_pretrained(str(folder / "processor"))
