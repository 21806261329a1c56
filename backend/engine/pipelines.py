"""Task pipelines built from a loaded model's components, and the one place that runs them.

Every task pipeline (txt2img, img2img, inpaint, each with or without ControlNet) is made with
``from_pipe`` from the loaded base pipeline, so all of them share the same UNet, VAE and text
encoders: no weights are copied and nothing moves between devices per request. The pipelines
are cached per model (ControlNet ones per set of ControlNets). What a call needs arrives as a
``DenoiseTask`` (denoise_task.py).

``run_denoise`` is the single call site of a diffusers pipeline: per-device speed-ups
belong here only. ``PipelineCache.adopt`` applies the acceleration layer (acceleration.py)
once per loaded model: eager speed-ups (SDPA, fused QKV, channels_last, TF32) and, when
compiling is on, the per-bucket compiled UNet that every task pipeline shares;
``prepare_pipeline`` covers each task pipeline's ControlNets. ``unet_for_loras`` keeps LoRA
jobs correct on a fused/compiled UNet.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from backend.engine import families
from backend.engine.denoise_task import ControlTask as ControlTask
from backend.engine.denoise_task import DenoiseTask as DenoiseTask
from backend.engine.denoise_task import StepCallback as StepCallback
from backend.engine.errors import InvalidRequest
from backend.engine.schedulers import is_flow_config, make_scheduler, schedule_length
from backend.engine.vae_tiling import use_vae_tiling

if TYPE_CHECKING:
    from backend.engine.acceleration import AccelerationOptions
    from backend.engine.types import EngineConfig

log = logging.getLogger(__name__)

KINDS = ("txt2img", "img2img", "inpaint")


def pipeline_kind(task_kind: str, inpaint_checkpoint: bool) -> str:
    """The diffusers task a request kind runs as: an inpaint checkpoint (9-channel UNet) does
    everything through its inpaint pipeline (txt2img = a full mask over a grey image)."""
    if task_kind not in KINDS:
        raise InvalidRequest("kind", task_kind, f"expected one of {list(KINDS)}")
    return "inpaint" if inpaint_checkpoint else task_kind


def inference_steps(steps: int, strength: float, flow: bool = False) -> int:
    """Scheduler steps so that exactly ``steps`` denoising steps run at ``strength``
    (``schedulers.schedule_length``; ``flow``: a flow-matching pipeline, which truncates its
    schedule differently; ``schedulers.check_steps`` refuses what cannot)."""
    return schedule_length(steps, strength, flow)


def acceleration_options(config: EngineConfig, device: str) -> AccelerationOptions:
    """The speed-ups for ``device``: ``config.acceleration`` when given, else the device's
    recommended eager ones (none on the CPU) with ``config.compile``. Checked here, so a bad
    value stops the server at start-up with the option's name."""
    from backend.engine.acceleration import AccelerationOptions, check_options

    options = config.acceleration
    if options is None:
        options = AccelerationOptions.recommended(device)
        options.compile = config.compile
    check_options(options)
    return options


def accelerate_model(pipe: Any, options: AccelerationOptions, device: str) -> Any:
    """Eager speed-ups on the model's shared modules, and its compiled UNet when compiling is
    on and can work on ``device`` (else None). Idempotent: done once per loaded model."""
    from backend.engine.acceleration import apply_eager_optimizations
    from backend.engine.compiled_unet import compile_pipeline

    apply_eager_optimizations(pipe, options, device)
    return compile_pipeline(pipe, options, device)


def release_model(pipe: Any) -> None:
    """Before a model is dropped: stop its compiled UNet's background compiler, whose thread
    would otherwise keep the weights alive. Off the caller's thread (a compile in progress
    may take minutes to finish)."""
    import threading

    compiled: Any = getattr(getattr(pipe, "unet", None), "__dict__", {}).get("forward")
    if compiled is not None and hasattr(compiled, "uninstall"):
        threading.Thread(target=compiled.uninstall, name="unet-compile-stop", daemon=True).start()


@contextmanager
def unet_for_loras(pipe: Any) -> Iterator[None]:
    """The UNet as LoRAs need it, for one job: plain attention (fused q/k/v projections would
    bypass the LoRA layers on to_q/to_k/to_v) and the eager forward (LoRA layers change the
    modules a compiled graph was traced for: it would recompile on the artist's time)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

    unet = getattr(pipe, "unet", None)
    if unet is None:  # a transformer family: never fused or compiled (acceleration.py)
        yield
        return
    fused = "fuse_qkv" in getattr(unet, "_dl_acceleration", ())
    compiled = unet.__dict__.get("forward")
    compiled = compiled if hasattr(compiled, "eager_forward") else None
    # 1. Plain attention and the eager forward for this job.
    if fused:
        unet.set_attn_processor(AttnProcessor2_0())
    if compiled is not None:
        unet.forward = compiled.eager_forward
    try:
        yield
    finally:
        # 2. Back to the fast path.
        if compiled is not None:
            unet.forward = compiled
        if fused:
            unet.set_attn_processor(FusedAttnProcessor2_0())


class PipelineCache:
    """Task pipelines per loaded model, sharing its components (see the module doc).

    ``acceleration``: the speed-ups applied to each adopted model (None = none but
    channels_last on CUDA, e.g. in tests that build a cache by hand).
    """

    def __init__(self, acceleration: AccelerationOptions | None = None) -> None:
        self.acceleration = acceleration
        self.compiled: Any | None = None  # the current model's CompiledUNet, if compiling
        self._owner: Any | None = None  # the base pipeline the cache was built from
        self._scheduler_config: dict[str, Any] = {}
        self._pipes: dict[tuple[str, tuple[str, ...]], Any] = {}

    def clear(self) -> None:
        self._owner = None
        self._pipes.clear()

    def adopt(self, model: Any) -> None:
        """Make ``model`` the current one: forget the old model's task pipelines (they hold
        its weights) and apply the speed-ups to the new one (once per loaded model)."""
        base = model.pipe
        if self._owner is base:
            return
        self.clear()
        self._owner = base
        self._scheduler_config = dict(base.scheduler.config)
        self.compiled = None
        if self.acceleration is not None:
            device = str(getattr(model, "device", base.device))
            self.compiled = accelerate_model(base, self.acceleration, device)

    def get(self, model: Any, kind: str, controls: list[ControlTask]) -> Any:
        # 1. A different model is loaded: adopt it (normally done already when loading).
        self.adopt(model)
        key = (kind, tuple(control.name for control in controls))
        pipe = self._pipes.get(key)
        if pipe is None:
            pipe = self._build(model, kind, controls)
            if not controls:
                self._pipes[key] = pipe
            elif len(self._pipes) < 16:
                self._pipes[key] = pipe
        return pipe

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return self._scheduler_config

    def _build(self, model: Any, kind: str, controls: list[ControlTask]) -> Any:
        import diffusers

        family = families.get(model.family)
        class_name = family.pipeline(kind, bool(controls))
        pipe_class = family.pipeline_type(class_name)
        if model.inpaint and not controls and "mask_image" in _accepted(model.pipe):
            pipe_class = type(model.pipe)  # a Fill model is its own inpaint pipeline
            class_name = pipe_class.__name__
        extra: dict[str, Any] = {}
        if controls:
            nets = [control.controlnet for control in controls]
            multi = getattr(diffusers, family.multi_controlnet_class or "MultiControlNetModel")
            extra["controlnet"] = nets[0] if len(nets) == 1 else multi(nets)
        pipe = share_components(pipe_class, model.pipe, **extra)
        prepare_pipeline(pipe, self.acceleration)
        log.debug("built %s for %s", class_name, model.name)
        return pipe


def share_components(pipeline_class: Any, source: Any, **extra: Any) -> Any:
    """``pipeline_class.from_pipe(source, **extra)`` that leaves every shared module as it is.

    diffusers 0.42 ends ``from_pipe`` with ``to(dtype)`` (float32 when no dtype is given): that
    would cast the SHARED modules of a half-precision model, and it refuses quantized (GGUF)
    transformers; 0.39 cast only when asked. A same-named subclass whose ``to`` does nothing
    builds the pipeline, which then becomes an instance of the real class."""
    uncast = type(pipeline_class.__name__, (pipeline_class,), {"to": _no_cast})
    pipe = uncast.from_pipe(source, **extra)
    pipe.__class__ = pipeline_class
    return pipe


def _no_cast(self: Any, *args: Any, **kwargs: Any) -> Any:
    return self


def prepare_pipeline(pipe: Any, acceleration: AccelerationOptions | None = None) -> None:
    """Per-pipeline settings made once when it is built: the eager speed-ups for its modules
    (idempotent: the shared UNet/VAE were done when the model was adopted, so this covers its
    ControlNets). Without options: channels_last on CUDA only."""
    pipe.set_progress_bar_config(disable=True)
    if acceleration is not None:
        from backend.engine.acceleration import apply_eager_optimizations

        apply_eager_optimizations(pipe, acceleration, str(pipe.device))
    elif pipe.device.type == "cuda":
        # In place and idempotent: the modules are shared by every task pipeline.
        for name in ("unet", "controlnet"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)


def _accepted(pipe: Any) -> set[str]:
    return set(inspect.signature(type(pipe).__call__).parameters)


def _pil_rgb(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")


def _pil_mask(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def build_call_kwargs(pipe: Any, task: DenoiseTask, kind: str, item: int = 0) -> dict[str, Any]:
    """The keyword arguments of the pipeline call for item ``item`` of ``task`` (seed
    ``task.seeds[item]``) run as ``kind``: every item is its own call, drawing every random
    number (VAE encoding, noise, ancestral steps) from its own generator exactly as a single
    run with that seed does."""
    if not 0 <= item < len(task.seeds):
        raise InvalidRequest("item", item, f"expected 0..{len(task.seeds) - 1}")
    # 1. Common arguments: embeddings, steps, guidance, the item's CPU generator.
    strength = task.strength if kind != "txt2img" else 1.0
    kwargs: dict[str, Any] = {
        **(task.item_embeds[item] if task.item_embeds else task.embeds).pipeline_kwargs(),
        **task.extra_kwargs,
        "num_inference_steps": inference_steps(
            task.steps, strength, is_flow_config(pipe.scheduler.config)
        ),
        families.get(task.model.family).cfg_argument: task.cfg_scale,
        "num_images_per_prompt": 1,
        "generator": [torch.Generator("cpu").manual_seed(task.seeds[item])],
        "output_type": "np",
        "width": task.width,
        "height": task.height,
    }
    # 2. Source image and mask (an inpaint checkpoint gets a full mask outside inpaint).
    if kind in ("img2img", "inpaint"):
        source = task.sources()[item]
        if source is None:
            source = np.full((task.height, task.width, 3), 127, np.uint8)
        kwargs["image"] = _pil_rgb(source)
        kwargs["strength"] = strength
    if kind == "inpaint":
        mask = task.mask if task.kind == "inpaint" and task.mask is not None else None
        if mask is None:
            mask = np.ones((task.height, task.width), np.float32)
        kwargs["mask_image"] = _pil_mask(mask)
    # 3. ControlNet: one image per control, scales and guidance windows as lists.
    accepted = _accepted(pipe)
    if task.controls:
        images = [_pil_rgb(control.image) for control in task.controls]
        single = len(images) == 1
        # SD's txt2img ControlNet pipelines take the map as ``image``; Flux/Z-Image's and
        # every img2img/inpaint one as ``control_image``
        plain = kind == "txt2img" and "control_image" not in accepted
        kwargs["image" if plain else "control_image"] = images[0] if single else images
        modes = [control.mode for control in task.controls]
        if any(mode is not None for mode in modes):
            kwargs["control_mode"] = modes[0] if single else modes
        scales = [control.scale for control in task.controls]
        kwargs["controlnet_conditioning_scale"] = scales[0] if single else scales
        kwargs["control_guidance_start"] = [control.start for control in task.controls]
        kwargs["control_guidance_end"] = [control.end for control in task.controls]
    return {key: value for key, value in kwargs.items() if key in accepted}


def use_noise(scheduler: Any, noise: torch.Tensor) -> None:
    """Make this (fresh, per-item) scheduler noise the source with ``noise`` instead of the
    pipeline's generator draw, when the shapes agree (img2img and inpaint call add_noise
    once with the starting noise; flow-matching schedulers have ``scale_noise(sample, timestep,
    noise)`` instead). Packed latents (Flux-style tokens) differ in shape: they keep their own
    draw."""

    def shared(drawn: torch.Tensor) -> torch.Tensor:
        if tuple(drawn.shape) == tuple(noise.shape):
            return noise.to(device=drawn.device, dtype=drawn.dtype)
        return drawn

    add_noise = getattr(scheduler, "add_noise", None)
    if add_noise is not None:
        scheduler.add_noise = lambda original, drawn, timesteps: add_noise(
            original, shared(drawn), timesteps
        )
    scale_noise = getattr(scheduler, "scale_noise", None)
    if scale_noise is not None:
        scheduler.scale_noise = lambda sample, timestep, drawn=None: scale_noise(
            sample, timestep, None if drawn is None else shared(drawn)
        )


def run_denoise(
    cache: PipelineCache, task: DenoiseTask, on_step: StepCallback | None = None
) -> np.ndarray:
    """Run ``task``; returns (N, height, width, 3) uint8 RGB, one image per seed.

    The items of a batch run one after another through the same task pipeline, each with its
    own generator and a fresh scheduler: item i is byte-identical to a single run with seed
    ``seeds[i]`` (a batched call would differ by the batch's rounding, and diffusers draws
    some random numbers for the whole batch from the first generator). Progress counts the
    sampler steps of the whole job: ``steps`` per item.
    """
    # 1. The task pipeline (shared by every item).
    kind = pipeline_kind(task.kind, bool(task.model.inpaint))
    pipe = cache.get(task.model, kind, task.controls)
    use_vae_tiling(pipe, task.width, task.height)  # bounded VAE memory on large denoises
    total = task.steps * len(task.seeds)
    images = []
    for item in range(len(task.seeds)):
        # 2. A fresh scheduler per item, planned for the steps that must run.
        kwargs = build_call_kwargs(pipe, task, kind, item)
        schedule = int(kwargs["num_inference_steps"])
        config = {**cache.scheduler_config, **task.scheduler_overrides}
        pipe.scheduler = make_scheduler(task.sampler, config, schedule)
        if task.noise is not None:
            use_noise(pipe.scheduler, task.noise)
        order = max(1, int(getattr(pipe.scheduler, "order", 1)))
        done_before = item * task.steps

        # 3. Step callback: progress, preview and cancel, within one step (order-2 samplers
        # such as Heun evaluate twice per step: progress counts sampler steps).
        def step_end(
            _pipeline: Any,
            step: int,
            _timestep: Any,
            tensors: dict,
            _before: int = done_before,
            _order: int = order,
        ) -> dict:
            if on_step is not None:
                done = min(task.steps, math.ceil((step + 1) / _order))
                latents = tensors["latents"]
                if latents.ndim == 3 and hasattr(pipe, "_unpack_latents"):
                    # packed (B, tokens, C*4) latents (Flux): back to (B, C, h, w) for previews
                    latents = pipe._unpack_latents(
                        latents, task.height, task.width, pipe.vae_scale_factor
                    )
                on_step(_before + done, total, latents)
            if task.before_step is not None:
                task.before_step(min(1.0, math.ceil((step + 1) / _order) / task.steps))
            return tensors

        kwargs["callback_on_step_end"] = step_end
        kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        # 4. Denoise and decode.
        if task.before_step is not None:
            task.before_step(0.0)
        with torch.inference_mode():
            images.append(np.asarray(pipe(**kwargs).images)[0])
    return np.clip(np.stack(images) * 255.0 + 0.5, 0, 255).astype(np.uint8)
