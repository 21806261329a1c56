"""What Flux.1 and Z-Image share as families: the load hook (a ``LoadedModel`` from
``dit_loader``), the prompt-encode hook, the memory policy and packed-latent previews.

Memory policy (docs/engine.md, "What runs where"): the whole pipeline on the GPU when it fits
in free VRAM with a margin; else model offload (each of text encoders, transformer, VAE moves
to the GPU only while it runs); else sequential offload (layer by layer, slow but fits
anything). A GGUF Q8 or fp8 Flux transformer (about 12 GB) with model offload runs on a 16 GB
card: the T5 encoder (9.5 GB in bf16) is on the GPU only while it encodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine.families.dit_loader import DitSpec, load

log = logging.getLogger(__name__)

GIB = 1024**3
#: head room kept free on the GPU for activations (1024² Flux needs about 2-3 GB)
MARGIN_BYTES = 3 * GIB
#: head room beside the largest module alone (model offload: one module on the GPU at a time)
PART_MARGIN_BYTES = int(1.5 * GIB)


def choose_offload(model_bytes: int, largest_part_bytes: int, free_bytes: int | None) -> str:
    """ "none" | "model" | "sequential" for a pipeline of ``model_bytes`` whose largest
    module is ``largest_part_bytes``, given ``free_bytes`` of VRAM (None: not a GPU)."""
    if free_bytes is None:
        return "none"
    if model_bytes + MARGIN_BYTES <= free_bytes:
        return "none"
    if largest_part_bytes + PART_MARGIN_BYTES <= free_bytes:
        return "model"
    return "sequential"


def _module_bytes(module: Any) -> int:
    if module is None or not hasattr(module, "parameters"):
        return 0
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return total


def _free_vram(device: str) -> int | None:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def place(pipe: Any, device: str) -> str:
    """Put ``pipe`` on ``device`` by the memory policy; returns the offload chosen."""
    import torch

    transformer = getattr(pipe, "transformer", None)
    if device.startswith("cuda") and getattr(transformer, "_dl_fp8", False):
        # an fp8 file: keep its weights in fp8 on the GPU (half of bf16), each layer upcast to
        # the compute dtype while it runs
        transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=transformer.dtype
        )
    names = [n for n in ("transformer", "text_encoder", "text_encoder_2", "vae")]
    sizes = [_module_bytes(getattr(pipe, name, None)) for name in names]
    offload = choose_offload(sum(sizes), max(sizes), _free_vram(device))
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif device != "cpu":
        pipe.to(device)
    log.info("placed %s on %s (offload: %s)", type(pipe).__name__, device, offload)
    return offload


def make_load_hook(
    spec: DitSpec,
    family_id: str,
    native: int,
    inpaint_of: Any = lambda pipe: False,
    loader: Any = None,
) -> Any:
    """The ``Family.load`` hook: ``inpaint_of(pipe)`` tells a dedicated inpaint (Fill) model;
    ``loader(source, spec, *, dtype, models_dir, name, vae)`` builds the pipeline (default:
    dit_loader.load; Qwen-Image and FLUX.2 klein pass their own)."""

    def hook(
        source: str,
        *,
        device: str,
        dtype: Any,
        name: str | None = None,
        vae: Any = None,
        models_dir: str | None = None,
        **_ignored: Any,
    ) -> Any:
        from backend.engine.loader import LoadedModel, approx_bytes

        display = name or Path(source).stem
        build = loader or load
        pipe = build(source, spec, dtype=dtype, models_dir=models_dir, name=display, vae=vae)
        offload = place(pipe, device)
        modules = [getattr(pipe, n, None) for n in ("transformer", "vae", "text_encoder")]
        modules.append(getattr(pipe, "text_encoder_2", None))
        loaded = LoadedModel(
            name=display,
            family=family_id,
            inpaint=bool(inpaint_of(pipe)),
            pipe=pipe,
            native_resolution=int(getattr(pipe, "_dl_native_size", None) or native),
            device=device,
            dtype=dtype,
            approx_bytes=approx_bytes(modules),
            own_vae=pipe.vae,
        )
        pipe._dl_offload = offload  # reported in /v1/health (memory policy)
        return loaded

    return hook


@dataclass
class DitEmbeds:
    """Prompt embeddings of a transformer family: ``kwargs`` go straight to the pipeline."""

    kwargs: dict[str, Any]

    def pipeline_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)


def unpack_flux_latents(latents: Any, width: int, height: int) -> Any:
    """Flux's packed (B, (h/2)(w/2), C*4) step latents as (B, C, h, w) for previews
    (``width``/``height``: the image size in pixels)."""
    batch, _, packed = latents.shape
    h, w = height // 16, width // 16
    channels = packed // 4
    latents = latents.view(batch, h, w, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, channels, h * 2, w * 2)
