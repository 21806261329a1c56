"""LyCORIS LoHa and LoKr files, loaded through PEFT and diffusers.

LoKr (``lokr_*``): the Kronecker product ``kron(w1, w2)`` factors exactly into a LoRA pair
(``lokr_to_lora``), which diffusers' ``load_lora_weights`` then loads like any kohya LoRA
(linear layers; convolution LoKr is refused at submit, lora_formats.py).

LoHa (``hada_*``):
diffusers' ``load_lora_weights`` reads LoRA and LoCon only; PEFT implements LoHa itself
(``LoHaConfig``): each file's layers are matched to the model's modules by their kohya names
(``lora_unet_<module path with _>``, ``lora_te_``/``lora_te1_``/``lora_te2_``), injected as a
named adapter with the file's rank and alpha per layer, and its tensors loaded as they are.
The adapters are ordinary PEFT layers: diffusers' ``set_adapters`` weighs them and
``unload_lora_weights`` removes them, leaving the base weights bit-identical.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from backend.engine.clip_layout import classic_path
from backend.engine.errors import ModelLoadError

log = logging.getLogger(__name__)

#: kohya name prefix -> pipeline component (longest first: "lora_te1_" before "lora_te_")
PREFIXES = (
    ("lora_unet_", "unet"),
    ("lora_te1_", "text_encoder"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te_", "text_encoder"),
)
LOHA_TENSORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")


def is_loha(state: dict) -> bool:
    return any(".hada_w1_a" in key for key in state)


def _group(pipe: Any, state: dict, name: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{component: {module path: {tensor name: tensor}}} (alphas included)."""
    paths: dict[str, tuple[str, str]] = {}
    for prefix, component in PREFIXES:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        for path, _module in model.named_modules():
            if path:
                kohya = prefix + classic_path(model, path).replace(".", "_")
                paths.setdefault(kohya, (component, path))
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    unknown = []
    for key, tensor in state.items():
        layer, _, tensor_name = key.partition(".")
        if layer not in paths:
            unknown.append(key)
            continue
        component, path = paths[layer]
        groups.setdefault(component, {}).setdefault(path, {})[tensor_name] = tensor
    if unknown:
        log.warning("LoHa %s: %d tensors match no layer, e.g. %s", name, len(unknown), unknown[0])
        raise ModelLoadError(
            f"The LoHa {name!r} was made for layers this model does not have "
            f"({len(unknown)} of {len(state)} weights match nothing): it is for another model."
        )
    return groups


def load_loha(pipe: Any, state: dict, adapter: str, name: str) -> None:
    """Inject ``state`` (a LoHa file's tensors) into ``pipe`` as the adapter ``adapter``."""
    from peft import LoHaConfig, inject_adapter_in_model, set_peft_model_state_dict

    for component, modules in _group(pipe, state, name).items():
        model = getattr(pipe, component)
        ranks = {path: int(parts["hada_w1_b"].shape[0]) for path, parts in modules.items()}
        alphas = {
            path: float(parts["alpha"]) if "alpha" in parts else float(ranks[path])
            for path, parts in modules.items()
        }
        config = LoHaConfig(
            r=max(ranks.values()),
            alpha=max(ranks.values()),
            target_modules=sorted(modules),
            rank_pattern={re.escape(path): rank for path, rank in ranks.items()},
            alpha_pattern={re.escape(path): alpha for path, alpha in alphas.items()},
            use_effective_conv2d=any("hada_t1" in parts for parts in modules.values()),
        )
        inject_adapter_in_model(config, model, adapter_name=adapter)
        tensors = {
            f"{path}.{tensor}": value
            for path, parts in modules.items()
            for tensor, value in parts.items()
            if tensor in LOHA_TENSORS
        }
        result = set_peft_model_state_dict(model, tensors, adapter_name=adapter)
        if result.unexpected_keys:
            raise ModelLoadError(
                f"The LoHa {name!r} has weights of shapes this model's layers do not take: "
                "it is for another model."
            )


def is_lokr(state: dict) -> bool:
    return any(".lokr_w1" in key or ".lokr_w2" in key for key in state)


def _kron_factors(w1: Any, w2: Any | None, w2_a: Any, w2_b: Any) -> tuple[Any, Any]:
    """(up, down) with up @ down == kron(w1, w2) exactly (w2 = w2_a @ w2_b when decomposed)."""
    import torch

    a, b = w1.shape
    if w2 is None:  # kron(w1, w2_a @ w2_b) = kron(w1, w2_a) @ kron(I_b, w2_b)
        return torch.kron(w1, w2_a), torch.kron(torch.eye(b, dtype=w1.dtype), w2_b)
    c, d = w2.shape
    if b * c <= a * d:  # kron(w1, I_c) @ kron(I_b, w2)
        eye_b, eye_c = torch.eye(b, dtype=w1.dtype), torch.eye(c, dtype=w1.dtype)
        return torch.kron(w1, eye_c), torch.kron(eye_b, w2)
    eye_a, eye_d = torch.eye(a, dtype=w1.dtype), torch.eye(d, dtype=w1.dtype)
    return torch.kron(eye_a, w2), torch.kron(w1, eye_d)  # kron(I_a, w2) @ kron(w1, I_d)


def lokr_to_lora(state: dict, name: str) -> dict:
    """A LyCORIS LoKr's linear layers as the exact same weight differences in kohya LoRA form
    (``up @ down = kron(w1, w2) * scale``), which diffusers loads. LyCORIS's scale: alpha over
    the rank of the decomposed factor, 1 when both factors are full."""
    import torch

    layers = sorted({key.split(".", 1)[0] for key in state if ".lokr_" in key})
    out: dict[str, Any] = {}
    for layer in layers:
        parts = {
            key.split(".", 1)[1]: value
            for key, value in state.items()
            if key.startswith(layer + ".")
        }
        if "lokr_t2" in parts or any(v.dim() != 2 for k, v in parts.items() if k != "alpha"):
            raise ModelLoadError(
                f"The LoKr {name!r} changes convolution layers, which cannot be loaded yet."
            )
        dim = None
        w1 = parts.get("lokr_w1")
        if w1 is None:
            w1 = parts["lokr_w1_a"] @ parts["lokr_w1_b"]
            dim = parts["lokr_w1_b"].shape[0]
        w2 = parts.get("lokr_w2")
        if w2 is None:
            dim = parts["lokr_w2_b"].shape[0]
        up, down = _kron_factors(
            w1.float(), None if w2 is None else w2.float(),
            parts.get("lokr_w2_a", torch.empty(0)).float(), parts.get("lokr_w2_b", torch.empty(0)).float(),
        )  # fmt: skip
        alpha = parts.get("alpha")
        scale = float(alpha) / dim if alpha is not None and dim is not None else 1.0
        out[f"{layer}.lora_up.weight"] = (up * scale).contiguous()
        out[f"{layer}.lora_down.weight"] = down.contiguous()
        out[f"{layer}.alpha"] = torch.tensor(float(down.shape[0]))
    return out
