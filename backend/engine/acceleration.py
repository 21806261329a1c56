"""Opt-in speed-ups for a loaded diffusers pipeline: eager tweaks and a background compiler.

Two layers, both safe to skip:

* ``apply_eager_optimizations(pipe, options)``: SDPA attention, fused QKV projections and
  ``channels_last`` memory format on the UNet, VAE and ControlNet(s), plus TF32/cuDNN flags on
  CUDA. Numerically equivalent to the plain pipeline (within fp16 rounding).
* ``CompiledUNet`` (compiled_unet.py): installs itself as a module's ``forward`` and dispatches per call signature
  (a static-shape bucket: tensor shapes, dtypes, grad mode). A signature first runs eagerly;
  its ``torch.compile`` twin is built (and warmed up once) on a background thread and swapped
  in when ready, so the artist never waits for a compile. Any compile or run error of the
  compiled twin is logged and that signature falls back to eager for good.

GPU-only paths (TF32, cuDNN benchmark, CUDA graphs, inductor compile) are no-ops with a log
line on other devices. Compiled artefacts persist across restarts through inductor's FX-graph
and autotune caches under ``options.cache_dir``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from backend.engine.errors import InvalidRequest

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "background", "blocking")
DTYPES = ("auto", "float16", "bfloat16", "float32")
#: Native resolutions (pixels, width x height) compiled by default; all multiples of 64.
DEFAULT_BUCKETS: tuple[tuple[int, int], ...] = ((512, 512), (768, 768), (1024, 1024))
BUCKET_MULTIPLE = 64
LATENT_SCALE = 8

CompileFn = Callable[[Callable[..., Any]], Callable[..., Any]]


@dataclass
class AccelerationOptions:
    channels_last: bool = True
    fuse_qkv: bool = True
    sdpa: bool = True
    tf32: bool = True  # TF32 matmuls/convs and cuDNN autotuning (CUDA only)
    compile: str = "off"  # off | background | blocking
    compile_backend: str = "inductor"
    compile_mode: str | None = None  # inductor mode; None = "reduce-overhead" with CUDA graphs
    cuda_graphs: bool = True
    buckets: tuple[tuple[int, int], ...] = DEFAULT_BUCKETS  # () = every signature seen
    max_compiled: int = 8  # signatures compiled at most (dynamo's cache size)
    cache_dir: str | None = None  # inductor FX-graph/autotune caches (persist across restarts)
    dtype: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccelerationOptions:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest("acceleration", unknown, "unknown acceleration option(s)")
        values = dict(data)
        if "buckets" in values:
            values["buckets"] = tuple(tuple(int(v) for v in b) for b in values["buckets"])
        options = cls(**values)
        check_options(options)
        return options

    @classmethod
    def recommended(cls, device: str) -> AccelerationOptions:
        """What a server should use on ``device``: everything on CUDA, nothing elsewhere."""
        if is_cuda(device):
            return cls(compile="background")
        return cls(channels_last=False, fuse_qkv=False, tf32=False, compile="off")


def check_options(options: AccelerationOptions) -> None:
    if options.compile not in COMPILE_MODES:
        raise InvalidRequest(
            "compile", options.compile, f"must be one of {', '.join(COMPILE_MODES)}"
        )
    if options.dtype not in DTYPES:
        raise InvalidRequest("dtype", options.dtype, f"must be one of {', '.join(DTYPES)}")
    if options.max_compiled < 1:
        raise InvalidRequest("max_compiled", options.max_compiled, "must be at least 1")
    for bucket in options.buckets:
        if len(bucket) != 2 or any(v <= 0 or v % BUCKET_MULTIPLE for v in bucket):
            raise InvalidRequest(
                "buckets", bucket, f"each bucket is (width, height), multiples of {BUCKET_MULTIPLE}"
            )


def is_cuda(device: object) -> bool:
    return str(device).startswith("cuda")


def snap_to_bucket(width: int, height: int, multiple: int = BUCKET_MULTIPLE) -> tuple[int, int]:
    """Round a size up to the next multiple of ``multiple`` (the static shapes we compile)."""
    if width <= 0 or height <= 0:
        raise InvalidRequest("size", (width, height), "width and height must be positive")
    return (-(-width // multiple) * multiple, -(-height // multiple) * multiple)


def configure_compile_cache(cache_dir: str | None) -> None:
    """Point inductor's on-disk caches at ``cache_dir`` so a restart reuses compiled kernels."""
    if not cache_dir:
        return
    os.makedirs(cache_dir, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True
    log.info("compile cache: %s", cache_dir)


def configure_backends(options: AccelerationOptions, device: str) -> list[str]:
    """Process-wide CUDA flags (TF32, cuDNN benchmark). A no-op with a log line off CUDA."""
    if not options.tf32:
        return []
    if not is_cuda(device):
        log.info("tf32/cudnn.benchmark skipped: device %s is not CUDA", device)
        return []
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    return ["tf32", "cudnn_benchmark"]


def _pipeline_models(pipe: Any) -> list[tuple[str, Any]]:
    """The UNet, the VAE and every ControlNet of a pipeline (Multi-ControlNet unpacked)."""
    models = []
    for name in ("unet", "vae", "controlnet"):
        model = getattr(pipe, name, None)
        if model is None or not _sd_attention(model):
            continue
        nets = getattr(model, "nets", None)
        if nets is not None or isinstance(model, (list, tuple)):
            for i, net in enumerate(nets if nets is not None else model):
                models.append((f"{name}[{i}]", net))
        else:
            models.append((name, model))
    return models


def _sd_attention(model: Any) -> bool:
    """Whether ``model``'s attention runs SD's processors (``attention_processor`` module):
    transformer ControlNets (Flux, Z-Image) bring their own, which SDPA/fusing would break."""
    nets = getattr(model, "nets", None)
    for net in nets if nets is not None else [model]:
        processors = getattr(net, "attn_processors", None) or {}
        modules = {type(p).__module__ for p in processors.values()}
        if any(not m.endswith("attention_processor") for m in modules):
            return False
    return True


def _set_sdpa(model: Any) -> bool:
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = getattr(model, "attn_processors", None)
    if not processors or not hasattr(model, "set_attn_processor"):
        return False
    if any("Added" in type(p).__name__ or "Fused" in type(p).__name__ for p in processors.values()):
        return False
    model.set_attn_processor(AttnProcessor2_0())
    return True


def _fuse_qkv(model: Any) -> bool:
    """Fuse q/k/v (self-attention) and k/v (cross-attention) projections into one matmul."""
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    processors = getattr(model, "attn_processors", None)
    if not processors:
        return False
    if any("Added" in type(p).__name__ for p in processors.values()):
        return False
    if getattr(model, "peft_config", None):
        log.info("fused QKV skipped for %s: LoRA adapters are attached", type(model).__name__)
        return False
    if hasattr(model, "original_attn_processors"):
        model.original_attn_processors = model.attn_processors  # lets unfuse restore them
    for module in model.modules():
        if isinstance(module, Attention) and not getattr(module, "fused_projections", False):
            module.fuse_projections(fuse=True)
    model.set_attn_processor(FusedAttnProcessor2_0())
    return True


def apply_eager_optimizations(
    pipe: Any, options: AccelerationOptions, device: str | None = None
) -> list[str]:
    """Apply the eager speed-ups in place; returns what was applied (``"unet:fuse_qkv"``...).

    Idempotent: a model already optimised is skipped. Apply after LoRAs are fused (fused QKV
    is skipped while PEFT adapters are attached).
    """
    import torch

    check_options(options)
    device = str(device if device is not None else getattr(pipe, "device", "cpu"))
    applied = configure_backends(options, device)
    for name, model in _pipeline_models(pipe):
        done: set[str] = getattr(model, "_dl_acceleration", set())
        # 1. SDPA attention (FusedAttnProcessor2_0 is SDPA too, so fusing replaces it).
        if options.sdpa and "sdpa" not in done and _set_sdpa(model):
            done.add("sdpa")
        # 2. Fused QKV projections.
        if options.fuse_qkv and "fuse_qkv" not in done and _fuse_qkv(model):
            done.add("fuse_qkv")
        # 3. channels_last for the convolutions.
        if options.channels_last and "channels_last" not in done:
            model.to(memory_format=torch.channels_last)
            done.add("channels_last")
        model._dl_acceleration = done
        applied.extend(f"{name}:{item}" for item in sorted(done))
    log.info("eager optimisations on %s: %s", device, ", ".join(applied) or "none")
    return applied
