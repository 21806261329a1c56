"""Tiny Stable Diffusion models built in memory from configs in code (tests, CI, demos).

They keep the real SD layouts (VAE scale factor 8, 4 latent channels, CLIP BPE tokenizers,
SDXL's two text encoders and "text_time" conditioning) at toy sizes: a 2-step 64x64 generation
runs on a CPU in a fraction of a second. Weights are seeded, so every build is identical.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from backend.engine import families
from backend.engine.tokenizer import load_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import ControlNetModel, StableDiffusionPipeline, StableDiffusionXLPipeline

FAMILIES = families.ids()
TEXT_HIDDEN = 32
TEXT_HIDDEN_2 = (
    48  # differs from TEXT_HIDDEN, as in SDXL (768 / 1280), so loaders can tell them apart
)
TEXT_PROJECTION = 32
TIME_EMBED_DIM = 8

_UNET_BASE: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "cross_attention_dim": TEXT_HIDDEN,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}

_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [16, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
    "act_fn": "silu",
}

_TEXT: dict[str, Any] = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
    "projection_dim": TEXT_PROJECTION,
}

_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def check_family(family: str) -> families.Family:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: expected one of {', '.join(FAMILIES)}")
    return families.get(family)


def unet_config(family: str = "sd15", inpaint: bool = False) -> dict[str, Any]:
    """The tiny UNet: the shared base with the family's ``tiny.unet`` overrides."""
    spec = check_family(family)
    config = copy.deepcopy(_UNET_BASE)
    config["in_channels"] = 9 if inpaint else 4
    config.update(copy.deepcopy(dict(spec.tiny.unet)))
    return config


def vae_config(family: str = "sd15") -> dict[str, Any]:
    spec = check_family(family)
    config = copy.deepcopy(_VAE)
    config["scaling_factor"] = spec.vae_scaling_factor
    config.update(copy.deepcopy(dict(spec.tiny.vae)))
    return config


def text_encoder_config(second: bool = False) -> dict[str, Any]:
    """CLIP-L-like for SD1.5 and SDXL's first encoder; OpenCLIP-bigG-like (gelu) for the second."""
    config = copy.deepcopy(_TEXT)
    if second:
        config.update(hidden_act="gelu", pad_token_id=0, hidden_size=TEXT_HIDDEN_2)
        config.update(intermediate_size=2 * TEXT_HIDDEN_2)
    return config


def scheduler_config(family: str = "sd15") -> dict[str, Any]:
    check_family(family)
    return copy.deepcopy(_SCHEDULER)


def controlnet_config(family: str = "sd15") -> dict[str, Any]:
    """A ControlNet matching the tiny UNet of ``family`` (SDXL: with text_time conditioning)."""
    config = unet_config(family)
    for key in ("out_channels", "up_block_types", "sample_size", "mid_block_type"):
        config.pop(key, None)
    config["conditioning_embedding_out_channels"] = [16, 32, 48, 64]
    config["conditioning_channels"] = 3
    return config


def pipeline_configs(family: str = "sd15", inpaint: bool = False) -> dict[str, dict[str, Any]]:
    """Every component config of a tiny pipeline, keyed by the diffusers subfolder name."""
    configs = {
        "unet": unet_config(family, inpaint),
        "vae": vae_config(family),
        "scheduler": scheduler_config(family),
    }
    for index, encoder in enumerate(families.get(family).text_encoders):
        configs[encoder.component] = text_encoder_config(second=index > 0)
    return configs


def _seeded(seed: int, index: int) -> None:
    import torch

    torch.manual_seed(seed * 1000 + index)


def build_tiny_pipeline(
    family: str = "sd15", inpaint: bool = False, seed: int = 0
) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """A seeded fp32 tiny txt2img pipeline (the inpaint variant has a 9-channel UNet)."""
    import diffusers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # 1. Components in a fixed order, each after its own manual_seed.
    spec = families.get(family)
    configs = pipeline_configs(family, inpaint)
    _seeded(seed, 0)
    unet = UNet2DConditionModel(**configs["unet"])
    _seeded(seed, 1)
    vae = AutoencoderKL(**configs["vae"])
    components: dict[str, Any] = {"unet": unet, "vae": vae}
    for index, encoder in enumerate(spec.text_encoders):
        _seeded(seed, 2 + index)
        model_class = CLIPTextModelWithProjection if encoder.pooled else CLIPTextModel
        components[encoder.component] = model_class(CLIPTextConfig(**configs[encoder.component]))
        components[encoder.tokenizer] = load_clip_tokenizer(encoder.pad)
    components["scheduler"] = EulerDiscreteScheduler(**configs["scheduler"])
    # 2. Assemble the family's pipeline (no safety checker, no feature extractor).
    pipe: Any = getattr(diffusers, spec.base_pipeline)(**components, **spec.init_kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


#: The spread of the random weights the tiny builder gives a ControlNet's zero-initialised
#: output convolutions (controlnet_down_blocks, controlnet_mid_block).
ZERO_CONV_STD = 0.2
#: The gain of the condition embedding's last convolution: its output is about this many
#: times the control image's level, comparable to the latent features it is added to.
COND_OUT_GAIN = 4.0


def _wake_controlnet(model: Any, seed: int) -> None:
    """Seeded random weights where a fresh ControlNet is silent.

    A new ControlNet starts as a no-op: its output convolutions and the condition embedding's
    last convolution are zero (training grows them), and default-initialised embedding convs
    shrink the control image to almost nothing. Tiny models are random-weight wiring tests, so
    they get signal-preserving weights: the control image then visibly steers the UNet, and
    different control images give different results.
    """
    import math

    import torch

    generator = torch.Generator().manual_seed(seed * 1000 + 11)

    def normal(parameter: torch.Tensor, std: float) -> None:
        noise = torch.randn(parameter.shape, generator=generator) * std
        parameter.copy_(noise.to(parameter.dtype))

    embedding = model.controlnet_cond_embedding
    with torch.no_grad():
        # 1. The condition embedding: He-initialised convs, then a gain on the last one.
        for conv in [embedding.conv_in, *embedding.blocks]:
            normal(conv.weight, math.sqrt(2.0 / conv.weight[0].numel()))
            conv.bias.zero_()
        out = embedding.conv_out
        normal(out.weight, COND_OUT_GAIN / math.sqrt(out.weight[0].numel()))
        out.bias.zero_()
        # 2. The zero convolutions that hand the residuals to the UNet.
        for conv in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            normal(conv.weight, ZERO_CONV_STD)
            conv.bias.zero_()


def build_tiny_controlnet(family: str = "sd15", seed: int = 0) -> ControlNetModel:
    """A seeded ControlNet matching ``build_tiny_pipeline(family)``'s UNet, with weights that
    let the control image through (see ``_wake_controlnet``)."""
    from diffusers import ControlNetModel

    _seeded(seed, 10)
    model = ControlNetModel(**controlnet_config(family))
    _wake_controlnet(model, seed)
    return model


#: the built-ins every family declares (``Family.tiny``), smallest family first
_TINY_ORDER = sorted(families.FAMILIES, key=lambda family: family.native_size)
TINY_CHECKPOINTS: dict[str, tuple[str, bool]] = {
    name: (family.id, inpaint)
    for family in _TINY_ORDER
    for name, inpaint in family.tiny.checkpoints.items()
}
TINY_CONTROLNETS = {name: family.id for family in _TINY_ORDER for name in family.tiny.controlnets}
TINY_LORAS = {name: family.id for family in _TINY_ORDER for name in family.tiny.loras}
#: Stamped into every tiny checkpoint and ControlNet file; bump it whenever the builders change
#: so ``ensure_tiny_models`` rewrites stale cached files (2: ControlNet zero convs woken).
TINY_FORMAT_VERSION = "2"
TINY_VERSION_KEY = "diffusion_layers.tiny"


def _save_atomic(state: dict, metadata: dict[str, str], target: Any) -> None:
    """Write a .safetensors file under a temporary name, then rename it into place."""
    import os
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=target.parent)
    os.close(handle)
    try:
        save_file(state, temp_name, metadata=metadata)
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def tiny_checkpoint_file(
    family: str, inpaint: bool, target: Any, seed: int = 0, markers: Iterable[str] = ()
) -> None:
    """Write a tiny checkpoint as a single LDM-layout .safetensors with its config embedded.
    ``markers``: empty marker tensors to add, as v-prediction files carry them ("v_pred",
    "ztsnr": see prediction.py)."""
    import torch

    from backend.engine.checkpoint_format import pipeline_to_ldm_state_dict
    from backend.engine.loader import CONFIG_KEY, embedded_config

    pipe = build_tiny_pipeline(family, inpaint, seed)
    metadata = {
        CONFIG_KEY: embedded_config(family, pipeline_configs(family, inpaint)),
        TINY_VERSION_KEY: TINY_FORMAT_VERSION,
    }
    state = pipeline_to_ldm_state_dict(pipe)
    state.update({name: torch.zeros(0) for name in markers})
    _save_atomic(state, metadata, target)


def tiny_controlnet_file(family: str, target: Any, seed: int = 0) -> None:
    """Write a tiny ControlNet: SD1.5 in the original control_model.* layout, SDXL in the
    diffusers layout (how SDXL ControlNets are distributed as single files)."""
    from backend.engine.checkpoint_format import controlnet_to_ldm_state_dict
    from backend.engine.loader import CONFIG_KEY, embedded_config

    model = build_tiny_controlnet(family, seed)
    if families.get(family).tiny.ldm_controlnet:
        state = controlnet_to_ldm_state_dict(model)
    else:
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
    metadata = {
        CONFIG_KEY: embedded_config(family, {"controlnet": controlnet_config(family)}),
        TINY_VERSION_KEY: TINY_FORMAT_VERSION,
    }
    _save_atomic(state, metadata, target)


TINY_FAMILIES: dict[str, str] = {
    **{name: family for name, (family, _) in TINY_CHECKPOINTS.items()},
    **TINY_CONTROLNETS,
    **TINY_LORAS,
}


def tiny_model_path(directory: Any, name: str) -> Any:
    """Where ensure_tiny_models puts built-in ``name`` under ``directory``."""
    from pathlib import Path

    if name in TINY_CHECKPOINTS:
        kind = "checkpoints"
    elif name in TINY_CONTROLNETS:
        kind = "controlnet"
    elif name in TINY_LORAS:
        kind = "lora"
    else:
        raise ValueError(f"name={name!r}: not a tiny built-in ({', '.join(TINY_FAMILIES)})")
    return Path(directory) / kind / f"{name}.safetensors"


def is_current_tiny_file(name: str, path: Any) -> bool:
    """Whether the built-in ``name`` at ``path`` exists and was written by these builders
    (checkpoints and ControlNets carry TINY_FORMAT_VERSION; the LoRA file has no stamp)."""
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return False
    if name in TINY_LORAS:
        return True
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError):
        return False  # unreadable (e.g. cut short): write it again
    return metadata.get(TINY_VERSION_KEY) == TINY_FORMAT_VERSION


def ensure_tiny_models(directory: Any, names: Iterable[str] | None = None) -> dict[str, str]:
    """Write the tiny built-ins into ``directory`` (checkpoints/, controlnet/, lora/).

    ``names`` limits the work to some built-ins (default: all). Current files are kept; missing
    ones and ones from older builders (another TINY_FORMAT_VERSION) are written atomically.
    Returns ``{name: path}`` for the requested built-ins.
    """
    from backend.engine.lora import tiny_lora_file

    wanted = list(TINY_FAMILIES) if names is None else list(names)
    paths: dict[str, str] = {}
    for name in wanted:
        target = tiny_model_path(directory, name)
        if not is_current_tiny_file(name, target):
            if name in TINY_CHECKPOINTS:
                family, inpaint = TINY_CHECKPOINTS[name]
                tiny_checkpoint_file(family, inpaint, target)
            elif name in TINY_CONTROLNETS:
                tiny_controlnet_file(TINY_CONTROLNETS[name], target)
            else:
                tiny_lora_file(TINY_LORAS[name], target)
        paths[name] = str(target)
    return paths
