"""A deterministic engine for fault injection in API tests (implements EngineProtocol honestly).

It produces real RGBA arrays that depend on the request (seed, input image, mask), reports
progress with a preview every step, honours the CancelToken every step, validates names against
its inventory like the real engine, and can be told to be slow or to raise on the next job.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from backend.engine.errors import InvalidRequest, ModelNotFound, OutOfMemory
from backend.engine.types import (
    CancelToken,
    CheckpointEntry,
    ControlNetEntry,
    GenerationRequest,
    Inventory,
    Layer,
    LoraEntry,
    Progress,
    ProgressCallback,
    ResultMetadata,
)

MODES = ("txt2img", "img2img", "inpaint", "outpaint")


class FakeEngine:
    device = "cpu"
    dtype = "float32"

    def __init__(self, step_delay: float = 0.0, preload_delay: float = 0.0) -> None:
        self.step_delay = step_delay
        self.preload_delay = preload_delay
        self.fail_next: BaseException | None = None
        self.preload_error: BaseException | None = None
        self.started = threading.Event()  # set when a generate() call begins
        self.generated = 0
        self._loaded: str | None = None

    @property
    def loaded_model(self) -> str | None:
        return self._loaded

    def inventory(self) -> Inventory:
        return Inventory(
            checkpoints=[
                CheckpointEntry("tiny", "sd15", False, "builtin:tiny"),
                CheckpointEntry("tiny-inpaint", "sd15", True, "builtin:tiny-inpaint"),
                CheckpointEntry("sub/dir model", "sd15", False, "/models/sub/dir model"),
            ],
            controlnets=[ControlNetEntry("tiny-canny", "sd15", "canny", "builtin:cn")],
            loras=[LoraEntry("film", "sd15", "/models/lora/film.safetensors")],
        )

    def samplers(self) -> list[str]:
        return ["euler", "dpmpp_2m_karras"]

    def preprocessors(self) -> list[str]:
        return ["canny", "scribble"]

    def check_request(self, request: GenerationRequest) -> None:
        inventory = self.inventory()
        if request.mode not in MODES:
            raise InvalidRequest("mode", request.mode, f"expected one of {MODES}")
        if request.width % 8 or request.height % 8:
            raise InvalidRequest("width", request.width, "width and height must be multiples of 8")
        if request.mode != "txt2img" and request.image is None:
            raise InvalidRequest("image", None, f"{request.mode} needs an image part")
        if request.mode == "inpaint" and request.mask is None:
            raise InvalidRequest("mask", None, "inpaint needs a mask part")
        if request.sampler not in self.samplers():
            raise InvalidRequest("sampler", request.sampler, "unknown sampler")
        if request.model is not None and request.model not in {
            c.name for c in inventory.checkpoints
        }:
            raise ModelNotFound(f"model {request.model!r} is not installed", field="model")
        for i, lora in enumerate(request.loras):
            if lora.name not in {lo.name for lo in inventory.loras}:
                raise ModelNotFound(
                    f"LoRA {lora.name!r} is not installed",
                    field=lora.field or f"loras[{i}].name",  # "style": a style's LoRA
                )

    def preload(self, model: str | None = None) -> None:
        time.sleep(self.preload_delay)
        if self.preload_error is not None:
            raise self.preload_error
        self._loaded = model or "tiny"

    def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Layer]:
        self.started.set()
        self._loaded = request.model or self._loaded or "tiny"
        for step in range(request.steps):
            if cancel is not None:
                cancel.check()
            if self.step_delay:
                time.sleep(self.step_delay)
            if on_progress is not None:
                preview = np.full((8, 8, 3), (step * 40) % 256, dtype=np.uint8)
                on_progress(Progress(step + 1, request.steps, preview))
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            raise failure
        self.generated += 1
        return [self._layer(request, i) for i in range(request.batch)]

    def _layer(self, request: GenerationRequest, index: int) -> Layer:
        seed = request.seed + index
        rng = np.random.default_rng(seed)
        h, w = request.height, request.width
        pixels = np.empty((h, w, 4), dtype=np.uint8)
        pixels[:, :, :3] = rng.integers(0, 256, size=3, dtype=np.uint8)
        pixels[:, :, 3] = 255
        if request.image is not None and request.mode == "img2img":
            keep = 1.0 - request.strength
            mixed = request.image[:, :, :3] * keep + pixels[:, :, :3] * (1.0 - keep)
            pixels[:, :, :3] = mixed.astype(np.uint8)
        x = y = 0
        if request.mask is not None and request.mode in ("inpaint", "outpaint"):
            ys, xs = np.nonzero(request.mask)
            if len(xs):
                x, y = int(xs.min()), int(ys.min())
                x2, y2 = int(xs.max()) + 1, int(ys.max()) + 1
                pixels = pixels[y:y2, x:x2].copy()
                pixels[:, :, 3] = request.mask[y:y2, x:x2]
        meta = ResultMetadata(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=seed,
            model=request.model or "tiny",
            sampler=request.sampler,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            strength=request.strength,
            mode=request.mode,
            width=request.width,
            height=request.height,
        )
        return Layer(image=pixels, x=x, y=y, seed=seed, metadata=meta)

    def preprocess(self, control_type: str, image: np.ndarray) -> np.ndarray:
        if control_type not in self.preprocessors():
            raise InvalidRequest("type", control_type, "no preprocessor for this control type")
        gray = image[:, :, :3].mean(axis=2)
        edges = (np.abs(np.diff(gray, axis=1, prepend=gray[:, :1])) > 8).astype(np.uint8) * 255
        return np.dstack([edges, edges, edges, np.full_like(edges, 255)])


def out_of_memory() -> OutOfMemory:
    return OutOfMemory("out of GPU memory: try a smaller size or batch")
