"""Write diffusers models in the original single-file ("LDM" / A1111) key layout.

This is how artists receive checkpoints: one ``.safetensors`` with ``model.diffusion_model.*``
(UNet), ``first_stage_model.*`` (VAE) and ``cond_stage_model.transformer.*`` (SD1.5's CLIP) or
``conditioner.embedders.{0,1}.*`` (SDXL's CLIP-L and OpenCLIP-bigG). The mapping below is
generic over block counts and layers per block, so the tiny models and the full-size ones
share it. Loading goes the other way through diffusers' ``from_single_file``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from backend.engine.clip_layout import classic_state

if TYPE_CHECKING:
    import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_TEXT_PREFIX = "cond_stage_model.transformer."
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
CONTROLNET_PREFIX = "control_model."

_RESNET_UNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_RESNET_VAE = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


class _Mapper:
    """Collects ``ldm_key -> tensor`` from a diffusers state dict, checking nothing is lost."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state
        self.out: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def copy(self, source: str, target: str) -> None:
        self.out[target] = self.state[source]
        self.used.add(source)

    def copy_tree(
        self, source_prefix: str, target_prefix: str, renames: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Copy every key under ``source_prefix``, applying ``renames`` to the remainder."""
        renames = tuple(renames)
        for key in self.state:
            if not key.startswith(source_prefix):
                continue
            rest = key[len(source_prefix) :]
            for old, new in renames:
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            self.copy(key, target_prefix + rest)

    def has(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.state)

    def finish(self, what: str) -> dict[str, torch.Tensor]:
        missing = sorted(set(self.state) - self.used)
        if missing:
            raise ValueError(f"{what}: no single-file mapping for {missing[:5]}")
        return self.out


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous() for key, value in state.items()}


def _map_unet_down_and_mid(mapper: _Mapper, config: Any) -> int:
    """input_blocks.* and middle_block.* (shared by UNet and ControlNet). Returns input count."""
    layers = int(config.layers_per_block)
    mapper.copy("time_embedding.linear_1.weight", "time_embed.0.weight")
    mapper.copy("time_embedding.linear_1.bias", "time_embed.0.bias")
    mapper.copy("time_embedding.linear_2.weight", "time_embed.2.weight")
    mapper.copy("time_embedding.linear_2.bias", "time_embed.2.bias")
    if mapper.has("add_embedding."):
        mapper.copy_tree("add_embedding.linear_1.", "label_emb.0.0.")
        mapper.copy_tree("add_embedding.linear_2.", "label_emb.0.2.")
    mapper.copy_tree("conv_in.", "input_blocks.0.0.")
    index = 1
    for block in range(len(config.down_block_types)):
        for layer in range(layers):
            mapper.copy_tree(
                f"down_blocks.{block}.resnets.{layer}.", f"input_blocks.{index}.0.", _RESNET_UNET
            )
            mapper.copy_tree(f"down_blocks.{block}.attentions.{layer}.", f"input_blocks.{index}.1.")
            index += 1
        if mapper.has(f"down_blocks.{block}.downsamplers.0."):
            mapper.copy_tree(
                f"down_blocks.{block}.downsamplers.0.conv.", f"input_blocks.{index}.0.op."
            )
            index += 1
    mapper.copy_tree("mid_block.resnets.0.", "middle_block.0.", _RESNET_UNET)
    mapper.copy_tree("mid_block.attentions.0.", "middle_block.1.")
    mapper.copy_tree("mid_block.resnets.1.", "middle_block.2.", _RESNET_UNET)
    return index


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    """A diffusers UNet2DConditionModel as ``model.diffusion_model.*`` keys."""
    mapper = _Mapper(unet.state_dict())
    config = unet.config
    _map_unet_down_and_mid(mapper, config)
    layers = int(config.layers_per_block) + 1
    index = 0
    for block in range(len(config.up_block_types)):
        for layer in range(layers):
            mapper.copy_tree(
                f"up_blocks.{block}.resnets.{layer}.", f"output_blocks.{index}.0.", _RESNET_UNET
            )
            has_attention = mapper.has(f"up_blocks.{block}.attentions.{layer}.")
            mapper.copy_tree(f"up_blocks.{block}.attentions.{layer}.", f"output_blocks.{index}.1.")
            if layer == layers - 1 and mapper.has(f"up_blocks.{block}.upsamplers.0."):
                slot = 2 if has_attention else 1
                mapper.copy_tree(
                    f"up_blocks.{block}.upsamplers.0.conv.", f"output_blocks.{index}.{slot}.conv."
                )
            index += 1
    mapper.copy_tree("conv_norm_out.", "out.0.")
    mapper.copy_tree("conv_out.", "out.2.")
    out = mapper.finish("unet")
    return {UNET_PREFIX + key: value for key, value in out.items()}


def _vae_attention(mapper: _Mapper, source: str, target: str) -> None:
    for key in [k for k in mapper.state if k.startswith(source)]:
        rest = key[len(source) :]
        for old, new in _VAE_ATTENTION:
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        mapper.copy(key, target + rest)
        tensor = mapper.out[target + rest]
        if tensor.ndim == 2:  # the original VAE uses 1x1 convolutions for attention
            mapper.out[target + rest] = tensor[:, :, None, None]


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL as ``first_stage_model.*`` keys."""
    mapper = _Mapper(vae.state_dict())
    config = vae.config
    count = len(config.down_block_types)
    for side in ("encoder", "decoder"):
        mapper.copy_tree(f"{side}.conv_in.", f"{side}.conv_in.")
        mapper.copy_tree(f"{side}.conv_out.", f"{side}.conv_out.")
        mapper.copy_tree(f"{side}.conv_norm_out.", f"{side}.norm_out.")
        mapper.copy_tree(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.", _RESNET_VAE)
        mapper.copy_tree(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.", _RESNET_VAE)
        _vae_attention(mapper, f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")
    for block in range(count):
        for layer in range(int(config.layers_per_block)):
            mapper.copy_tree(
                f"encoder.down_blocks.{block}.resnets.{layer}.",
                f"encoder.down.{block}.block.{layer}.",
                _RESNET_VAE,
            )
        mapper.copy_tree(
            f"encoder.down_blocks.{block}.downsamplers.0.conv.",
            f"encoder.down.{block}.downsample.conv.",
        )
    for block in range(len(config.up_block_types)):
        ldm_block = len(config.up_block_types) - 1 - block
        for layer in range(int(config.layers_per_block) + 1):
            mapper.copy_tree(
                f"decoder.up_blocks.{block}.resnets.{layer}.",
                f"decoder.up.{ldm_block}.block.{layer}.",
                _RESNET_VAE,
            )
        mapper.copy_tree(
            f"decoder.up_blocks.{block}.upsamplers.0.conv.",
            f"decoder.up.{ldm_block}.upsample.conv.",
        )
    mapper.copy_tree("quant_conv.", "quant_conv.")
    mapper.copy_tree("post_quant_conv.", "post_quant_conv.")
    out = mapper.finish("vae")
    return {VAE_PREFIX + key: value for key, value in out.items()}


def clip_to_ldm(text_encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIPTextModel: the original layout is the classic HF layout (``text_model.*``,
    clip_layout.py) under ``prefix``."""
    return {prefix + key: value for key, value in classic_state(text_encoder).items()}


def open_clip_to_ldm(
    text_encoder: Any, prefix: str = SDXL_OPENCLIP_PREFIX
) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection in OpenCLIP's layout (fused in_proj, transposed projection)."""
    import torch

    state = classic_state(text_encoder)
    mapper = _Mapper(state)
    mapper.copy("text_model.embeddings.position_embedding.weight", "positional_embedding")
    mapper.copy("text_model.embeddings.token_embedding.weight", "token_embedding.weight")
    mapper.copy_tree("text_model.final_layer_norm.", "ln_final.")
    mapper.copy("text_projection.weight", "text_projection")
    mapper.out["text_projection"] = mapper.out["text_projection"].T
    for layer in range(int(text_encoder.config.num_hidden_layers)):
        source = f"text_model.encoder.layers.{layer}."
        target = f"transformer.resblocks.{layer}."
        mapper.copy_tree(source + "layer_norm1.", target + "ln_1.")
        mapper.copy_tree(source + "layer_norm2.", target + "ln_2.")
        mapper.copy_tree(source + "mlp.fc1.", target + "mlp.c_fc.")
        mapper.copy_tree(source + "mlp.fc2.", target + "mlp.c_proj.")
        mapper.copy_tree(source + "self_attn.out_proj.", target + "attn.out_proj.")
        for kind in ("weight", "bias"):
            parts = [f"{source}self_attn.{name}_proj.{kind}" for name in ("q", "k", "v")]
            mapper.out[f"{target}attn.in_proj_{kind}"] = torch.cat([state[p] for p in parts], 0)
            mapper.used.update(parts)
    out = mapper.finish("text_encoder_2")
    return {prefix + key: value for key, value in out.items()}


def pipeline_to_ldm_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """A SD1.5 or SDXL pipeline as one original-layout state dict (what A1111 files hold)."""
    state = unet_to_ldm(pipe.unet)
    state.update(vae_to_ldm(pipe.vae))
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update(clip_to_ldm(pipe.text_encoder, SDXL_TEXT_PREFIX))
        state.update(open_clip_to_ldm(pipe.text_encoder_2))
    else:
        state.update(clip_to_ldm(pipe.text_encoder, SD15_TEXT_PREFIX))
    return _contiguous(state)


def controlnet_to_ldm_state_dict(controlnet: Any) -> dict[str, torch.Tensor]:
    """A diffusers ControlNetModel as ``control_model.*`` keys (the original ControlNet layout)."""
    mapper = _Mapper(controlnet.state_dict())
    count = _map_unet_down_and_mid(mapper, controlnet.config)
    for index in range(count):
        mapper.copy_tree(f"controlnet_down_blocks.{index}.", f"zero_convs.{index}.0.")
    mapper.copy_tree("controlnet_mid_block.", "middle_block_out.0.")
    mapper.copy_tree("controlnet_cond_embedding.conv_in.", "input_hint_block.0.")
    blocks = len(
        {k.split(".")[2] for k in mapper.state if k.startswith("controlnet_cond_embedding.blocks.")}
    )
    for block in range(blocks):
        mapper.copy_tree(
            f"controlnet_cond_embedding.blocks.{block}.", f"input_hint_block.{2 * (block + 1)}."
        )
    mapper.copy_tree("controlnet_cond_embedding.conv_out.", f"input_hint_block.{2 * (blocks + 1)}.")
    out = mapper.finish("controlnet")
    return _contiguous({CONTROLNET_PREFIX + key: value for key, value in out.items()})
