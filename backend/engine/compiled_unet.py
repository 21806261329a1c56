"""``CompiledUNet``: a module's ``forward`` dispatched per call signature to a ``torch.compile``
twin built on a background thread, plus ``compile_pipeline`` (install it on a pipeline's UNet)
and ``prewarm`` (compile the buckets an artist will use before the first job).

Split from acceleration.py (the eager speed-ups and options stay there). A signature first runs
eagerly; its compiled twin is swapped in when ready; any compile or run error of the twin is
logged and that signature falls back to eager for good.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backend.engine.acceleration import (
    LATENT_SCALE,
    AccelerationOptions,
    CompileFn,
    check_options,
    configure_compile_cache,
    is_cuda,
)
from backend.engine.errors import InvalidRequest

log = logging.getLogger(__name__)


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
