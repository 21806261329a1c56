"""LoRA files: write tiny ones in the kohya layout artists download, apply and remove them.

``loras_applied`` loads each LoRA as a named diffusers adapter with its weight, and afterwards
unloads them so the UNet and text encoder weights are bit-identical to before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.engine.clip_layout import classic_path
from backend.engine.errors import ModelLoadError
from backend.engine.lycoris import is_loha, is_lokr, load_loha, lokr_to_lora

log = logging.getLogger(__name__)

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _kohya_name(prefix: str, module_path: str) -> str:
    return prefix + module_path.replace(".", "_")


def kohya_lora_state_dict(pipe: Any, rank: int = 4, alpha: float = 2.0, seed: int = 0) -> dict:
    """A random LoRA over every attention projection of ``pipe`` in kohya's key layout
    (``lora_unet_*`` / ``lora_te_*`` with ``.lora_down``, ``.lora_up`` and ``.alpha``)."""
    import torch

    if rank < 1:
        raise ValueError(f"rank={rank!r}: must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    groups = (
        ("lora_unet_", pipe.unet, UNET_TARGETS),
        ("lora_te_", pipe.text_encoder, TEXT_TARGETS),
    )
    for prefix, model, targets in groups:
        for path, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                continue
            if not any(path.endswith("." + target) for target in targets):
                continue
            name = _kohya_name(prefix, classic_path(model, path))
            if isinstance(module, torch.nn.Conv2d):
                continue  # SD1.5 attention projections are all Linear
            down = torch.randn(rank, module.in_features, generator=generator) * 0.5
            up = torch.randn(module.out_features, rank, generator=generator) * 0.5
            state[f"{name}.lora_down.weight"] = down.contiguous()
            state[f"{name}.lora_up.weight"] = up.contiguous()
            state[f"{name}.alpha"] = torch.tensor(float(alpha))
    return state


def tiny_lora_file(family: str, target: Any, seed: int = 0) -> None:
    """Write the tiny built-in LoRA for the tiny ``family`` pipeline."""
    from backend.engine import families
    from backend.engine.tiny import _save_atomic, build_tiny_pipeline

    spec = families.get(family)
    if not spec.tiny.loras:
        raise ValueError(f"family={family!r}: no tiny LoRA exists for {spec.label}")
    pipe = build_tiny_pipeline(family, seed=seed)
    version = spec.lora.metadata_versions[0] if spec.lora.metadata_versions else ""
    metadata = {"ss_base_model_version": version, "ss_network_module": "networks.lora"}
    _save_atomic(kohya_lora_state_dict(pipe, seed=seed), metadata, Path(target))


def read_lora_file(path: str | Path) -> dict:
    """A LoRA's tensors from a .safetensors file (or a folder holding
    pytorch_lora_weights.safetensors); pickle files are read with ``weights_only``."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "pytorch_lora_weights.safetensors"
    try:
        if path.suffix.lower() == ".safetensors":
            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/torch raise several kinds for damaged files
        log.warning("reading LoRA %s failed: %s", path, exc)
        raise ModelLoadError(
            f"The LoRA file {path.name} is unreadable: it is damaged or was cut short."
        ) from exc
    if not isinstance(state, dict):
        raise ModelLoadError(f"The LoRA file {path.name} holds no tensors.")
    return state


_TEXT_ATTENTION = re.compile(r"^(lora_te[12]?_.*_self_attn_)[qkv]_proj\.lora_down\.weight$")


def with_text_out_proj(state: dict) -> dict:
    """``state`` with a zero ``out_proj`` pair on each text encoder that has none.

    diffusers (0.39) tells its intermediate text-encoder layout by an ``out_proj`` key and
    refuses a kohya LoRA without one ("Could not automatically infer state dict type"), e.g. a
    LoRA trained on q/k/v only. A pair whose up matrix is zero adds nothing to any weight."""
    import torch

    added: dict[str, Any] = {}
    for key, value in state.items():
        match = _TEXT_ATTENTION.match(key)
        if match is None:
            continue
        encoder = match.group(1).split("_text_model_")[0]
        if any(k.startswith(encoder) and "_out_proj." in k for k in [*state, *added]):
            continue
        layer = match.group(1) + "out_proj"
        width = int(value.shape[1])
        added[f"{layer}.lora_down.weight"] = torch.zeros(1, width, dtype=value.dtype)
        added[f"{layer}.lora_up.weight"] = torch.zeros(width, 1, dtype=value.dtype)
        added[f"{layer}.alpha"] = torch.tensor(1.0)
    return {**state, **added} if added else state


#: prefixes the bare dotted layout may carry before the transformer's module paths
DOTTED_PREFIXES = ("diffusion_model.", "transformer.")


def dotted_to_peft(state: dict, pipe: Any, name: str = "") -> dict:
    """A bare dotted LoRA (``[diffusion_model.|transformer.]X.lora_down.weight`` [r, in],
    ``X.lora_up.weight`` [out, r], optional ``X.alpha``) as diffusers/PEFT keys
    (``transformer.X.lora_A.weight``, ``transformer.X.lora_B.weight`` with alpha / r folded
    into B: exact), when every key is such a tensor and every ``X`` names a linear layer of
    ``pipe``'s transformer. Original layer names (BFL's ``double_blocks.0.img_attn.qkv``) come
    back under ComfyUI's ``diffusion_model.``, which diffusers' converters take; anything else
    (kohya, prefixed original names, UNets) comes back unchanged.

    Raises ModelLoadError naming ``name`` when a down matrix has no up matrix."""
    import torch

    from backend.engine.lora_formats import is_dotted_down

    model = getattr(pipe, "transformer", None)
    layers = [key.removesuffix(".lora_down.weight") for key in state if is_dotted_down(key)]
    if not isinstance(model, torch.nn.Module) or not layers:
        return state
    suffixes = (".lora_down.weight", ".lora_up.weight", ".alpha")
    allowed = {layer + suffix for layer in layers for suffix in suffixes}
    if any(key not in allowed for key in state):
        return state  # other tensors (text encoder, biases): not this layout alone
    modules = dict(model.named_modules())
    paths = {
        layer: next((layer.removeprefix(p) for p in DOTTED_PREFIXES if layer.startswith(p)), layer)
        for layer in layers
    }
    known = [isinstance(modules.get(path), torch.nn.Linear) for path in paths.values()]
    if not any(known) and not any(key.startswith(DOTTED_PREFIXES) for key in state):
        return {"diffusion_model." + key: value for key, value in state.items()}  # BFL, ...
    if not all(known):
        return state
    converted: dict[str, Any] = {}
    for layer, path in paths.items():
        up = state.get(layer + ".lora_up.weight")
        if up is None:
            raise ModelLoadError(
                f"The LoRA {name!r} is damaged: its layer {path} has a lora_down weight but no "
                "lora_up weight."
            )
        down = state[layer + ".lora_down.weight"]
        alpha = state.get(layer + ".alpha")
        scale = 1.0 if alpha is None else float(alpha) / int(down.shape[0])
        converted[f"transformer.{path}.lora_A.weight"] = down
        converted[f"transformer.{path}.lora_B.weight"] = up * scale
    return converted


def adapter_name(index: int, name: str) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return f"dl{index}_{safe}"[:64]


@contextmanager
def loras_applied(pipe: Any, loras: list[tuple[str, str, float]]) -> Iterator[list[str]]:
    """Apply ``(path, name, weight)`` LoRAs to ``pipe`` for the duration of the block.

    Yields the adapter names. On exit (also on errors) every adapter is unloaded.
    """
    names: list[str] = []
    try:
        # 1. Load each file as its own adapter.
        for index, (path, name, _weight) in enumerate(loras):
            adapter = adapter_name(index, name)
            state = read_lora_file(path)
            names.append(adapter)  # before loading: a half-loaded adapter is unloaded too
            try:
                if is_loha(state):
                    load_loha(pipe, state, adapter, name)
                else:
                    if is_lokr(state):
                        state = lokr_to_lora(state, name)
                    state = dotted_to_peft(state, pipe, name)
                    pipe.load_lora_weights(with_text_out_proj(state), adapter_name=adapter)
                    if not any(adapter in found for found in pipe.get_list_adapters().values()):
                        raise ValueError(f"no layer of {name!r} matched")  # diffusers kept none
            except ModelLoadError:
                raise
            except Exception as exc:  # diffusers raises ValueError/KeyError/... on foreign layouts
                log.exception("loading LoRA %s failed", path)
                raise ModelLoadError(
                    f"Could not load the LoRA {name!r}: its weights do not fit this model's "
                    "layers (details in the server log)."
                ) from exc
        # 2. Activate them together with their weights.
        if names:
            pipe.set_adapters(names, adapter_weights=[float(w) for _, _, w in loras])
        yield names
    finally:
        # 3. Remove every adapter layer so the base weights are untouched.
        if names:
            pipe.unload_lora_weights()
