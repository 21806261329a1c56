"""The generation engine facade: one request in, finished layers out.

``Engine`` implements ``EngineProtocol`` (types.py). It checks the request, makes sure the
model is loaded (``ModelManager``), turns the region into a denoise task at the model's native
size (whole region for txt2img/img2img, selection + context for inpaint/outpaint), runs it
through the shared task pipelines (pipelines.py) and turns the results back into layers.

``_denoise`` is the only method that runs the model: tests subclass ``Engine`` and replace it
with a deterministic fake to check geometry, colour matching and compositing through the real
``generate`` path.
"""

from __future__ import annotations

import gc
import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch

from backend.engine import families
from backend.engine.compositing import prefill, resize_rgb
from backend.engine.controlnet import control_map, prepare_controls
from backend.engine.decompose import run_decompose
from backend.engine.edit import run_edit
from backend.engine.errors import Cancelled, InvalidRequest, OutOfMemory
from backend.engine.geometry import native_size
from backend.engine.hires import finish_inpaint_full, plan_hires
from backend.engine.hires import planned_steps as hires_planned_steps
from backend.engine.inpaint import crop_like_plan, finish_inpaint, item_sources, plan_inpaint
from backend.engine.pipelines import (
    DenoiseTask,
    PipelineCache,
    StepCallback,
    acceleration_options,
    run_denoise,
    unet_for_loras,
)
from backend.engine.preprocess import NO_DEPTH, PREPROCESSORS
from backend.engine.previews import step_preview
from backend.engine.prompt_syntax import PromptPlan, encode_plan, plan_for, with_prompt_loras
from backend.engine.prompts import PromptEncoder
from backend.engine.reference import References, is_reference
from backend.engine.request_checks import DEFAULT_MAX_PIXELS, check_request
from backend.engine.result_metadata import prediction_overrides, result_metadata
from backend.engine.schedulers import SAMPLERS, sampler_names
from backend.engine.types import (
    CancelToken,
    EngineConfig,
    GenerationRequest,
    Inventory,
    Layer,
    Progress,
    ProgressCallback,
    ResultMetadata,
)
from backend.engine.upscale import planned_steps as upscale_planned_steps
from backend.engine.upscale import upscale_layers

log = logging.getLogger(__name__)

#: modes the checkpoint's family runs itself (Family.edit, Family.decompose)
FAMILY_RUNS = {"edit": run_edit, "layers": run_decompose}

OOM_MESSAGE = (
    "The GPU ran out of memory. Try a smaller region or batch, or close other GPU programs."
)


class Engine:
    """txt2img / img2img / inpaint / outpaint with ControlNet and LoRA on one loaded model."""

    def __init__(
        self,
        config: EngineConfig,
        models: Any | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        prompt_cache_size: int = 64,
    ) -> None:
        if models is None:
            from backend.engine.model_manager import ModelManager

            models = ModelManager(config)
        self.config = config
        self.models = models
        self.max_pixels = max_pixels
        self.device = str(models.device)
        self.dtype = str(models.dtype).replace("torch.", "")
        self.prompts = PromptEncoder(prompt_cache_size)
        self.references = References(self.inventory)  # reference images (IP-Adapter)
        self.acceleration = acceleration_options(config, self.device)
        self._pipelines = PipelineCache(self.acceleration)
        self._loaded: Any | None = None
        self._upscalers: Any | None = None  # upscalers.UpscalerCache, made on first use

    # -- cheap queries (any thread) ---------------------------------------------------------

    @property
    def loaded_model(self) -> str | None:
        return None if self._loaded is None else self._loaded.name

    @property
    def offload(self) -> str | None:
        """The loaded model's memory policy (families/dit_family.py): "none", "model" or
        "sequential"; None when nothing is loaded."""
        if self._loaded is None:
            return None
        return str(getattr(self._loaded.pipe, "_dl_offload", "none"))

    def inventory(self) -> Inventory:
        return self.models.inventory()

    def samplers(self) -> list[str]:
        return sampler_names()

    def preprocessors(self) -> list[str]:
        """Every preprocessor; "depth" only while a depth model is installed."""
        depth = self._depth_available()
        return [name for name in PREPROCESSORS if name != "depth" or depth]

    def default_model(self) -> str | None:
        if self.config.default_model:
            return self.config.default_model
        checkpoints = self.inventory().checkpoints
        plain = [entry.name for entry in checkpoints if not entry.inpaint]
        return (plain or [entry.name for entry in checkpoints] or [None])[0]

    def check_request(self, request: GenerationRequest) -> None:
        # The prompt's <lora:...> tags are checked like the request's LoRAs (errors: prompt).
        request = with_prompt_loras(request, self._lora_names())
        check_request(
            request,
            self.inventory(),
            self.default_model(),
            SAMPLERS,
            PREPROCESSORS,
            self.max_pixels,
            self.config.model_vaes,
        )
        for index, control in enumerate(request.controls):
            if control.type == "depth" and control.preprocess and not self._depth_available():
                raise InvalidRequest(f"controls[{index}].preprocess", True, NO_DEPTH)

    # -- work (the worker thread) ------------------------------------------------------------

    def preload(self, model: str | None = None) -> None:
        self._load(model)

    def preprocess(self, control_type: str, image: np.ndarray) -> np.ndarray:
        if control_type not in PREPROCESSORS:
            raise InvalidRequest("type", control_type, f"expected one of {list(PREPROCESSORS)}")
        from backend.engine.types import ControlInput

        rgb = control_map(ControlInput(control_type, image), self._depth_estimator(control_type))
        alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=2)

    def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Layer]:
        # 1. Validate, load the model, stop early if already cancelled.
        self.check_request(request)
        request = with_prompt_loras(request, self._lora_names())
        cancel = cancel or CancelToken()
        cancel.check()
        if request.mode == "upscale" and not request.upscale.refine:
            on_step = self._step_callback("", on_progress, cancel)  # no latents: no family
            return upscale_layers(self, request, None, None, on_step)
        loaded = self._load(request.model, request.vae)
        on_step = self._step_callback(loaded.family, on_progress, cancel)
        try:
            if request.mode in FAMILY_RUNS:  # the family's own run: edit.py, decompose.py
                with self.models.loras_applied(loaded, request.loras):
                    return FAMILY_RUNS[request.mode](self, request, loaded, on_step)
            # 2. LoRAs stay applied only for this job (on the plain UNet, see unet_for_loras).
            with (
                self._lora_unet(loaded, request),
                self.models.loras_applied(loaded, request.loras),
                self.references.loaded(request, loaded),
            ):
                return self._generate(request, loaded, on_step)
        except Cancelled:
            raise
        except torch.cuda.OutOfMemoryError as error:
            raise self._out_of_memory(error) from error
        except RuntimeError as error:
            if "out of memory" in str(error).lower():
                raise self._out_of_memory(error) from error
            raise

    def _generate(
        self, request: GenerationRequest, loaded: Any, on_step: StepCallback
    ) -> list[Layer]:
        family = loaded.family
        multiple = families.get(family).size_multiple  # SDXL buckets: multiples of 64
        variant = ";".join(f"{lora.name}:{lora.weight:g}" for lora in request.loras)
        # Comments, wildcards (per item, from its seed) and emphasis: prompt_syntax.py.
        prompts = plan_for(request, self._lora_names())
        embeds, item_embeds = encode_plan(
            self.prompts,
            loaded.pipe,
            prompts,
            request.clip_skip,
            model=loaded.name,
            family=family,
            variant=variant,
        )
        seeds = [request.seed + index for index in range(request.batch)]
        strength = 1.0 if request.mode in ("txt2img", "outpaint") else request.strength
        task = DenoiseTask(
            kind="inpaint" if request.mode in ("inpaint", "outpaint") else request.mode,
            model=loaded,
            width=0,
            height=0,
            embeds=embeds,
            seeds=seeds,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            sampler=request.sampler,
            strength=strength,
            item_embeds=item_embeds,
            scheduler_overrides=prediction_overrides(request),
        )
        self.references.attach(task, request)  # IP-Adapter embeddings and weights
        native = request.resolution or loaded.native_resolution  # a style's preference
        if request.mode == "upscale":  # scale, then refine in tiles (upscale.py)
            return upscale_layers(self, request, loaded, task, on_step, prompts)
        if task.kind == "inpaint":
            # 3a. Selection + context, at native size; the layer is trimmed to the selection.
            plan = plan_inpaint(request, native, multiple)
            task.width, task.height = plan.native_width, plan.native_height
            task.image, task.mask = plan.native_image, plan.native_mask
            task.item_images = item_sources(plan, request.inpaint.fill, seeds)
            task.controls = self._controls(request, family, lambda m: crop_like_plan(plan, m))
            hires = plan_hires(self, request, loaded, on_step, self.config.hires)  # big box
            match = request.inpaint.color_match
            images = self._denoise(task, hires.first_pass() if hires else on_step)
            placed = [
                finish_inpaint_full(
                    plan, hires.full_size(task, image, i, plan.box.x, plan.box.y), match
                )
                if hires
                else finish_inpaint(plan, image, match)
                for i, image in enumerate(images)
            ]
        else:
            # 3b. The whole region at native size; an opaque layer covering it.
            width, height = native_size(request.width, request.height, native, multiple)
            task.width, task.height = width, height
            if request.mode == "img2img":
                assert request.image is not None
                # One source per seed: the fill noise is seeded per item (see item_sources).
                task.item_images = [
                    resize_rgb(
                        prefill(request.image, request.inpaint.fill, seed=seed), width, height
                    )
                    for seed in seeds
                ]
                task.image = task.item_images[0]
            task.controls = self._controls(request, family, lambda m: resize_rgb(m, width, height))
            hires = plan_hires(self, request, loaded, on_step, self.config.hires)  # big region
            images = self._denoise(task, hires.first_pass() if hires else on_step)
            placed = [
                (_opaque(hires.full_size(task, image, i)), 0, 0)
                if hires
                else (_opaque(resize_rgb(image, request.width, request.height)), 0, 0)
                for i, image in enumerate(images)
            ]
        # 4. Layers with what made them.
        return [
            Layer(image, x, y, seed, self._metadata(request, loaded, seed, strength, prompts))
            for (image, x, y), seed in zip(placed, seeds, strict=True)
        ]

    def upscaler_cache(self) -> Any:
        if self._upscalers is None:
            from backend.engine.upscalers import UpscalerCache

            self._upscalers = UpscalerCache(self.device, self.config.allow_pickle)
        return self._upscalers

    def planned_steps(self, request: GenerationRequest) -> int:
        """Every denoising step the job will report (known before it starts)."""
        name = request.model or self.default_model()
        loaded = self._loaded if self._loaded is not None and self._loaded.name == name else None
        entry = next((c for c in self.inventory().checkpoints if c.name == name), None)
        family = loaded.family if loaded else (entry.family if entry else families.fallback().id)
        native = loaded.native_resolution if loaded else families.get(family).native_size
        native = request.resolution or native
        if request.mode == "upscale":
            return upscale_planned_steps(request, native)
        if request.mode == "layers":  # one decomposition, whatever the batch
            return request.steps
        return hires_planned_steps(request, native, family, self.config.hires, name or "")

    def _denoise(self, task: DenoiseTask, on_step: StepCallback) -> np.ndarray:
        """The model call: (N, task.height, task.width, 3) uint8 RGB, one per seed."""
        return run_denoise(self._pipelines, task, on_step)

    # -- helpers -----------------------------------------------------------------------------

    def _load(self, model: str | None, vae: str | None = None) -> Any:
        name = model or self.default_model()
        if self._loaded is not None and self._loaded.name != name:
            # Another model: drop the task pipelines first so the manager can free the old
            # weights before it loads the new ones.
            self._pipelines.clear()
            self.prompts.clear(self._loaded.name)
            self._loaded = None
        # Always ask the manager (a cheap cache hit): it may have reloaded the model.
        loaded = self.models.checkpoint(name)
        if self._loaded is not None and loaded.pipe is not self._loaded.pipe:
            self.prompts.clear(loaded.name)  # same name, new weights
        self._loaded = loaded
        # The job's VAE (or the model's default); task pipelines hold the old one: rebuild.
        use_vae = getattr(self.models, "use_vae", None)
        if callable(use_vae) and use_vae(loaded, vae):
            self._pipelines.clear()
        # The speed-ups, once per loaded model (before any job's LoRAs are attached).
        self._pipelines.adopt(loaded)
        return loaded

    def _lora_unet(self, loaded: Any, request: GenerationRequest) -> AbstractContextManager:
        # IP-Adapters replace attention processors too: the same plain, eager UNet.
        if any(lora.weight != 0 for lora in request.loras) or self.references.used(request):
            return unet_for_loras(loaded.pipe)
        return nullcontext()

    def _controls(self, request: GenerationRequest, family: str, fit: Any) -> list:
        controls = [control for control in request.controls if not is_reference(control)]
        if not controls:
            return []
        types = {control.type for control in controls if control.preprocess}
        depth = self._depth_estimator("depth") if "depth" in types else None
        return prepare_controls(self.models, family, controls, fit, depth)

    def _depth_estimator(self, control_type: str) -> Any:
        if control_type != "depth":
            return None
        getter = getattr(self.models, "depth_estimator", None)
        return getter() if callable(getter) else None

    def _depth_available(self) -> bool:
        """Cheap: is a depth model installed (the manager loads it on first use)?"""
        finder = getattr(self.models, "depth_model_path", None)
        return callable(finder) and finder() is not None

    def _step_callback(
        self, family: str, on_progress: ProgressCallback | None, cancel: CancelToken
    ) -> StepCallback:
        def on_step(step: int, total: int, latents: torch.Tensor) -> None:
            cancel.check()
            if on_progress is not None:
                # Tiled passes report the assembled picture (RGB) or nothing instead of latents.
                preview = latents
                if isinstance(latents, torch.Tensor):
                    preview = step_preview(latents[:1], family)
                on_progress(Progress(step=step, total=total, preview=preview))

        return on_step

    def _metadata(
        self,
        request: GenerationRequest,
        loaded: Any,
        seed: int,
        strength: float,
        prompts: PromptPlan | None = None,
    ) -> ResultMetadata:
        prompts = prompts or plan_for(request, self._lora_names())
        return result_metadata(request, loaded, seed, strength, prompts)

    def _lora_names(self) -> list[str]:
        return [entry.name for entry in self.inventory().loras]

    def _out_of_memory(self, error: BaseException) -> OutOfMemory:
        log.error("out of memory: %s", error)
        self._pipelines.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return OutOfMemory(OOM_MESSAGE)


def _opaque(rgb: np.ndarray) -> np.ndarray:
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2)
