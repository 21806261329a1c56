"""Opt-in speed-ups for a loaded diffusers pipeline: eager tweaks and a background compiler.

Two layers, both safe to skip:

* ``apply_eager_optimizations(pipe, options)``: SDPA attention, fused QKV projections and
  ``channels_last`` memory format on the UNet, VAE and ControlNet(s), plus TF32/cuDNN flags on
  CUDA. Numerically equivalent to the plain pipeline (within fp16 rounding).
* ``CompiledUNet``: installs itself as a module's ``forward`` and dispatches per call signature
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
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
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


def signature_key(args: tuple, kwargs: dict) -> tuple:
    """A hashable description of a call: tensor shapes/dtypes/devices, values of the rest."""
    import torch

    def describe(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return ("T", tuple(value.shape), str(value.dtype), str(value.device))
        if isinstance(value, dict):
            return ("D", tuple((k, describe(v)) for k, v in sorted(value.items())))
        if isinstance(value, (list, tuple)):
            return ("L", tuple(describe(v) for v in value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return ("N", type(value).__name__)  # values vary per step (timesteps): type only
        return ("V", repr(value))

    modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
    return (modes, describe(args), describe(kwargs))


def _sample_size(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    sample = args[0] if args else kwargs.get("sample")
    shape = getattr(sample, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    return (int(shape[3]) * LATENT_SCALE, int(shape[2]) * LATENT_SCALE)


def _clone(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


@dataclass
class _Slot:
    state: str = "queued"  # queued | compiling | ready | failed
    compiled: Callable[..., Any] | None = None
    error: str | None = None
    compile_s: float | None = None
    size: tuple[int, int] | None = None
    done: threading.Event = field(default_factory=threading.Event)


class CompiledUNet:
    """Per-signature compiled twin of a module's ``forward``, built off the request thread.

    ``install()`` replaces ``module.forward`` with this dispatcher; ``uninstall()`` restores it.
    ``compile_fn`` (tests inject one) turns the eager forward into a compiled callable; the
    default is ``torch.compile`` with ``options``' backend and mode.
    """

    def __init__(
        self,
        module: Any,
        options: AccelerationOptions,
        *,
        compile_fn: CompileFn | None = None,
        device: str | None = None,
    ) -> None:
        check_options(options)
        if options.compile == "off":
            raise InvalidRequest("compile", options.compile, "CompiledUNet needs compile on")
        self.module = module
        self.options = options
        self.device = str(device if device is not None else getattr(module, "device", "cpu"))
        self.eager_forward = module.forward
        self._compile_fn = compile_fn or self._torch_compile
        self._slots: dict[tuple, _Slot] = {}
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[tuple, tuple, dict] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.calls = {"eager": 0, "compiled": 0}

    # -- lifecycle ---------------------------------------------------------------------------
    def install(self) -> CompiledUNet:
        self.module.forward = self
        return self

    def uninstall(self) -> None:
        if self.module.__dict__.get("forward") is self:
            del self.module.forward
        self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=60)
            self._thread = None

    # -- dispatch ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = signature_key(args, kwargs)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._schedule(key, args, kwargs)
        if slot is not None and slot.state != "ready" and self.options.compile == "blocking":
            slot.done.wait()
        if slot is not None and slot.state == "ready" and slot.compiled is not None:
            try:
                if self.options.cuda_graphs and is_cuda(self.device):
                    import torch

                    torch.compiler.cudagraph_mark_step_begin()
                result = slot.compiled(*args, **kwargs)
                self.calls["compiled"] += 1
                return result
            except Exception as exc:  # any failure of the compiled twin: eager from now on
                log.exception("compiled forward failed; falling back to eager for %s", slot.size)
                slot.state, slot.error, slot.compiled = "failed", repr(exc), None
        self.calls["eager"] += 1
        return self.eager_forward(*args, **kwargs)

    def warm(self, args: tuple, kwargs: dict) -> None:
        """Queue a compile for the signature of this example call (e.g. at server start)."""
        self._schedule(signature_key(args, kwargs), args, kwargs)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued compile finished (ready or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for slot in list(self._slots.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not slot.done.wait(left):
                return False
        return True

    def states(self) -> dict[str, str]:
        """``{"512x512#0": "ready", ...}`` for health pages and the benchmark report."""
        out = {}
        for i, slot in enumerate(self._slots.values()):
            size = f"{slot.size[0]}x{slot.size[1]}" if slot.size else "any"
            out[f"{size}#{i}"] = slot.state
        return out

    # -- compiling ---------------------------------------------------------------------------
    def _schedule(self, key: tuple, args: tuple, kwargs: dict) -> _Slot | None:
        size = _sample_size(args, kwargs)
        buckets = self.options.buckets
        if buckets and size not in buckets:
            return None
        with self._lock:
            if key in self._slots:
                return self._slots[key]
            if len(self._slots) >= self.options.max_compiled:
                return None
            slot = self._slots[key] = _Slot(size=size)
        example = (_clone(args), _clone(kwargs))
        if self.options.compile == "blocking":
            self._build(slot, key, *example)
            return slot
        self._jobs.put((key, *example))
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name="unet-compiler", daemon=True)
            self._thread.start()
        return slot

    def _worker(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            key, args, kwargs = job
            self._build(self._slots[key], key, args, kwargs)

    def _build(self, slot: _Slot, key: tuple, args: tuple, kwargs: dict) -> None:
        """1. compile, 2. run on the example (the real compile happens there), 3. publish."""
        import torch

        grad, inference = key[0]  # the caller's grad/inference mode: dynamo guards on it
        slot.state = "compiling"
        start = time.perf_counter()
        try:
            compiled = self._compile_fn(self.eager_forward)
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                compiled(*args, **kwargs)
                compiled(*args, **kwargs)  # CUDA graphs record on the second run
            if is_cuda(self.device):
                torch.cuda.synchronize(self.device)
        except Exception as exc:  # a compile failure must never reach the artist
            log.exception("compile failed for %s; staying eager", slot.size)
            slot.state, slot.error = "failed", repr(exc)
        else:
            slot.compiled, slot.state = compiled, "ready"
            slot.compile_s = time.perf_counter() - start
            log.info("compiled %s in %.1f s", slot.size, slot.compile_s)
        finally:
            slot.done.set()

    def _torch_compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import torch

        mode = self.options.compile_mode
        if self.options.compile_backend != "inductor":
            mode = None
        elif mode is None:
            use_graphs = self.options.cuda_graphs and is_cuda(self.device)
            mode = "reduce-overhead" if use_graphs else "max-autotune-no-cudagraphs"
        return torch.compile(fn, backend=self.options.compile_backend, mode=mode, dynamic=False)


def compile_pipeline(
    pipe: Any,
    options: AccelerationOptions,
    device: str | None = None,
    *,
    compile_fn: CompileFn | None = None,
) -> CompiledUNet | None:
    """Install a ``CompiledUNet`` on ``pipe.unet`` when compiling is on and can work here.

    Inductor compiling is a CUDA path: on other devices it is a no-op with a log line (other
    backends, e.g. ``"eager"``/``"aot_eager"``, and injected ``compile_fn`` run anywhere).
    """
    check_options(options)
    device = str(device if device is not None else getattr(pipe, "device", "cpu"))
    if options.compile == "off":
        return None
    if compile_fn is None and options.compile_backend == "inductor" and not is_cuda(device):
        log.info("compile skipped: inductor compiling is enabled on CUDA only (device %s)", device)
        return None
    if getattr(pipe, "unet", None) is None:
        log.info("compile skipped: only UNets are compiled (%s)", type(pipe).__name__)
        return None
    configure_compile_cache(options.cache_dir)
    existing = pipe.unet.__dict__.get("forward")
    if isinstance(existing, CompiledUNet):
        return existing
    return CompiledUNet(pipe.unet, options, compile_fn=compile_fn, device=device).install()


def unet_example_inputs(
    unet: Any,
    width: int,
    height: int,
    *,
    batch: int = 2,
    dtype: Any = None,
    device: Any = None,
    timestep_dtype: Any = None,
) -> tuple[tuple, dict]:
    """Arguments shaped like a diffusers SD/SDXL pipeline's UNet call (CFG batch of 2).

    ``timestep_dtype``: int64 for DPM++/DDIM-style schedulers (the default), float32 for Euler.
    """
    import torch

    config = unet.config
    dtype = dtype or unet.dtype
    device = device or unet.device
    sample = torch.zeros(
        batch, config.in_channels, height // LATENT_SCALE, width // LATENT_SCALE, dtype=dtype
    ).to(device)
    timestep = torch.tensor(999, dtype=timestep_dtype or torch.int64, device=device)
    cross = config.cross_attention_dim
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    states = torch.zeros(batch, 77, cross, dtype=dtype, device=device)
    added = None
    if config.addition_embed_type == "text_time":
        text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        added = {
            "text_embeds": torch.zeros(batch, text_dim, dtype=dtype, device=device),
            "time_ids": torch.zeros(batch, 6, dtype=dtype, device=device),
        }
    kwargs = {
        "encoder_hidden_states": states,
        "timestep_cond": None,
        "cross_attention_kwargs": None,
        "added_cond_kwargs": added,
        "return_dict": False,
    }
    return (sample, timestep), kwargs


def prewarm(
    compiled: CompiledUNet,
    sizes: Iterable[tuple[int, int]],
    batch: int = 2,
    timestep_dtype: Any = None,
    inference_mode: bool = True,
) -> None:
    """Queue compiles for ``sizes`` with the standard pipeline call signature.

    ``inference_mode``: True when pipelines run under ``torch.inference_mode()`` (our engine),
    False for a bare diffusers call (``no_grad`` only); dynamo guards on it, so must match.
    """
    import torch

    with torch.inference_mode(inference_mode), torch.no_grad():
        for width, height in sizes:
            example = unet_example_inputs(
                compiled.module, width, height, batch=batch, timestep_dtype=timestep_dtype
            )
            compiled.warm(*example)
