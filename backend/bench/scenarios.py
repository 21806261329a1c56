"""The benchmark scenarios: one generation each, described once for both sides.

``Scenario.plain_kwargs()`` is the plain diffusers call and ``Scenario.job_params()`` the same
generation as a ``POST /v1/jobs`` params part (plus ``inputs()`` for its image parts), so the
baseline and our server always run the same work: same model folder, sampler (DPM++ 2M),
steps, CFG, size and seed.

A ``live`` scenario goes through ``POST /v1/live/{session}/frames`` instead
(``Scenario.live_params()``), frame after frame, each frame a fresh canvas (``inputs(frame)``
adds one more brush dab per frame, as a painting artist sends). ``steps`` is the number of
denoising steps that actually run on both sides: our engine turns it into
``inference_steps(steps, strength)`` scheduler steps; ``plain_kwargs`` asks plain diffusers
for the same count, since its img2img runs ``int(num_inference_steps * strength)`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backend.bench.weights import (
    CHECKPOINTS,
    CONTROLNET,
    FLUX2_KLEIN,
    FLUX_SCHNELL,
    QWEN_LAYERED,
    SD15,
    SD15_INPAINT,
    SDXL,
    ZIMAGE,
)

PROMPT = "a watercolour fox in a snowy birch forest, soft light"
EDIT_PROMPT = "put the red ball from the reference into the fox's paws"
NEGATIVE = "blurry, low quality"
SEED = 1234
TRANSFER = "transfer_2048"
TRANSFER_SIZE = 2048


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str  # checkpoint folder name under <models>/checkpoints
    mode: str  # txt2img | img2img | inpaint | upscale | edit | layers
    width: int
    height: int
    steps: int = 20
    cfg_scale: float = 7.0
    strength: float = 1.0
    controlnet: bool = False
    sampler: str = "dpmpp_2m"  # our sampler name; the plain side uses the same scheduler
    live: bool = False  # through the live route, a fresh canvas per frame
    #: mode "upscale": the result is (width, height) x factor, refined in native-size tiles at
    #: ``strength`` (plain side: backend/bench/plain_upscale.py)
    factor: float = 0.0
    #: mode "edit": reference images besides the region (controls of type "reference", no
    #: model; the plain side passes ``image=[region, *references]``)
    references: int = 0
    #: mode "layers": how many RGBA layers (the plain side's ``layers=``)
    layers: int = 0
    #: the diffusers class of the plain side when it is not the family's task pipeline
    plain_pipeline: str = ""

    @property
    def family(self) -> str:
        return CHECKPOINTS[self.model][0]

    def inputs(self, frame: int = 0) -> dict[str, np.ndarray]:
        """Deterministic RGBA image / gray mask / control map for the modes that need them;
        ``frame`` > 0 paints that many brush dabs on the image (live: one stroke more per frame).
        """
        rng = np.random.default_rng(7)
        h, w = self.height, self.width
        out: dict[str, np.ndarray] = {}
        if self.mode in ("img2img", "inpaint", "upscale", "edit", "layers"):
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], -1)
            noise = rng.integers(0, 24, (h, w, 3))
            rgba = np.concatenate([rgb + noise, np.full((h, w, 1), 255)], -1)
            out["image"] = rgba.clip(0, 255).astype(np.uint8)
            if frame > 0:
                paint_stroke(out["image"], frame)
        if self.mode == "inpaint":
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
            out["mask"] = mask
        for index in range(self.references):
            out[f"control_{index}"] = reference_picture(w, h, index)
        if self.controlnet:
            edges = np.zeros((h, w, 4), np.uint8)
            edges[..., 3] = 255
            edges[h // 3, :, :3] = 255
            edges[:, w // 2, :3] = 255
            out["control_0"] = edges
        return out

    def result_size(self) -> tuple[int, int]:
        """(width, height) of the generated picture (the plain side's image): the region's, or
        scaled by ``factor`` (upscale)."""
        if self.mode != "upscale":
            return self.width, self.height
        return round(self.width * self.factor), round(self.height * self.factor)

    def layer_size(self) -> tuple[int, int]:
        """(width, height) of our first result layer: ``result_size()``, except for inpaint:
        the mask's bounding box (an inpaint layer is transparent outside the selection and
        trimmed to its bounds, docs/protocol.md, while plain diffusers returns the region)."""
        if self.mode != "inpaint":
            return self.result_size()
        rows, cols = np.nonzero(self.inputs()["mask"])
        return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)

    def job_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "mode": self.mode,
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": NEGATIVE,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "sampler": self.sampler,
            "seed": SEED,
            "strength": self.strength,
        }
        if self.mode == "upscale":
            params["upscale"] = {"factor": self.factor, "refine": True}
        if self.references:
            params["controls"] = [
                {"type": "reference", "image": f"control_{index}", "model": None}
                for index in range(self.references)
            ]
        if self.layers:
            params["layers"] = self.layers
        if self.controlnet:
            params["controls"] = [
                {"type": "canny", "image": "control_0", "model": CONTROLNET, "preprocess": False}
            ]
        return params

    def live_params(self) -> dict[str, Any]:
        """The ``params`` part of ``POST /v1/live/{session}/frames`` (LiveParams)."""
        return {
            "model": self.model,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "width": self.width,
            "height": self.height,
            "strength": self.strength,
            "steps": self.steps,
            "sampler": self.sampler,
            "cfg_scale": self.cfg_scale,
            "seed": SEED,
        }

    def plain_inference_steps(self) -> int:
        """``num_inference_steps`` for plain diffusers so that ``steps`` denoising steps run
        (img2img runs ``int(num_inference_steps * strength)``; our engine uses the same rule)."""
        if self.mode not in ("img2img", "upscale") or self.strength >= 1.0:
            return self.steps
        from backend.engine.pipelines import inference_steps

        return inference_steps(self.steps, self.strength)

    @property
    def prompt(self) -> str:
        """The prompt both sides send (an instruction for mode edit)."""
        return EDIT_PROMPT if self.mode == "edit" else PROMPT

    def plain_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        from PIL import Image

        if self.mode in ("edit", "layers"):
            return self._plain_edit_kwargs(inputs)
        kwargs: dict[str, Any] = {
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "num_inference_steps": self.plain_inference_steps(),
            "guidance_scale": self.cfg_scale,
            "width": self.width,
            "height": self.height,
            "output_type": "pil",
        }
        if "image" in inputs:
            kwargs["image"] = Image.fromarray(inputs["image"][..., :3])
        if self.mode in ("img2img", "upscale"):
            kwargs["strength"] = self.strength
            del kwargs["width"], kwargs["height"]
        if self.mode == "upscale":  # the tiles are the images (plain_upscale.py)
            del kwargs["image"]
        if "mask" in inputs:
            kwargs["mask_image"] = Image.fromarray(inputs["mask"])
        if self.controlnet:
            kwargs["image"] = Image.fromarray(inputs["control_0"][..., :3])
        return kwargs

    def _plain_edit_kwargs(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Flux2KleinPipeline: ``image=[region, *references]`` at the region's size, CFG as
        ``guidance_scale`` (a distilled klein ignores it). QwenImageLayeredPipeline: the RGBA
        region, ``layers``, true CFG with the negative prompt, the 640 or 1024 bucket our
        engine picks for the region (qwen_run.run_decompose)."""
        from PIL import Image

        region = inputs["image"]
        kwargs: dict[str, Any] = {
            "prompt": self.prompt,
            "num_inference_steps": self.steps,
            "output_type": "pil",
        }
        if self.mode == "edit":
            references = [inputs[f"control_{i}"][..., :3] for i in range(self.references)]
            pictures = [region[..., :3], *references]
            kwargs.update(
                image=[Image.fromarray(p) for p in pictures],
                guidance_scale=self.cfg_scale,
                width=self.width,
                height=self.height,
            )
            return kwargs
        kwargs.update(
            image=Image.fromarray(region, "RGBA"),
            negative_prompt=NEGATIVE,
            true_cfg_scale=self.cfg_scale,
            layers=self.layers,
            resolution=640 if max(self.width, self.height) <= 800 else 1024,
        )
        return kwargs

    def plain_class(self) -> str:
        if self.plain_pipeline:
            return self.plain_pipeline
        from backend.engine import families

        task = "img2img" if self.mode == "upscale" else self.mode
        return families.get(self.family).pipeline(task, self.controlnet)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sd15_txt2img_512", SD15, "txt2img", 512, 512),
    Scenario("sd15_inpaint_512", SD15_INPAINT, "inpaint", 512, 512),
    Scenario("sd15_controlnet_512", SD15, "txt2img", 512, 512, controlnet=True),
    Scenario("sdxl_txt2img_1024", SDXL, "txt2img", 1024, 1024),
    # Live painting: img2img 512², LCM, 4 denoising steps actually run on both sides (plain:
    # num_inference_steps 8 x strength 0.5), CFG 1 (no negative pass), a new stroke per frame.
    Scenario(
        "sd15_live_512",
        SD15,
        "img2img",
        512,
        512,
        steps=4,
        cfg_scale=1.0,
        strength=0.5,
        sampler="lcm",
        live=True,
    ),
    # Large artwork: 1024² -> 2048² (Lanczos), tiled refine at 0.35 in 512 px tiles; 20 steps
    # run per tile on both sides.
    Scenario("sd15_upscale_2x_2048", SD15, "upscale", 1024, 1024, strength=0.35, factor=2.0),
    # Transformer families at their turbo settings: flow-matching Euler, CFG 1 (no negative
    # pass), the real 12B Flux.1 / 6B Z-Image architectures with random weights.
    Scenario(
        "flux1_schnell_1024_4steps", FLUX_SCHNELL, "txt2img", 1024, 1024, 4, 1.0, sampler="euler"
    ),
    Scenario("zimage_turbo_1024_8steps", ZIMAGE, "txt2img", 1024, 1024, 8, 1.0, sampler="euler"),
    # Issue #17: edit by instruction with one reference image (FLUX.2 klein 4B distilled: 4
    # steps, CFG 1) and decomposition into 4 RGBA layers (Qwen-Image-Layered: 8 steps of true
    # CFG 4, far fewer than its default 50, so a run fits the GPU budget), 1024², real
    # architectures with random weights (bench_edit.py).
    Scenario(
        "flux2_klein_edit_1024",
        FLUX2_KLEIN,
        "edit",
        1024,
        1024,
        4,
        1.0,
        sampler="euler",
        references=1,
        plain_pipeline="Flux2KleinPipeline",
    ),
    Scenario(
        "qwen_layered_1024",
        QWEN_LAYERED,
        "layers",
        1024,
        1024,
        8,
        4.0,
        sampler="euler",
        layers=4,
        plain_pipeline="QwenImageLayeredPipeline",
    ),
)
NAMES = tuple(s.name for s in SCENARIOS) + (TRANSFER,)


def reference_picture(width: int, height: int, index: int) -> np.ndarray:
    """A deterministic (height, width, 4) RGBA reference: a red disc on pale blue (``index``
    shifts it), another picture than the region."""
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width * (0.4 + 0.1 * index), height * 0.5
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= (min(width, height) * 0.3) ** 2
    image = np.empty((height, width, 4), np.uint8)
    image[...] = (200, 220, 250, 255)
    image[inside] = (220, 30, 40, 255)
    return image


def paint_stroke(image: np.ndarray, frame: int) -> None:
    """Paint ``frame`` dabs of one brush stroke into RGBA ``image`` (in place): every frame
    adds one dab, so consecutive frames differ the way a canvas does while the artist paints."""
    h, w = image.shape[:2]
    radius = max(2, min(h, w) // 24)
    for dab in range(1, frame + 1):
        # A slow diagonal zig-zag across the canvas; colour drifts along the stroke.
        t = dab * 0.37
        cx = int((0.5 + 0.4 * np.sin(t)) * (w - 1))
        cy = int((0.5 + 0.4 * np.sin(0.61 * t + 1.0)) * (h - 1))
        colour = (dab * 53 % 256, 255 - dab * 29 % 256, dab * 97 % 256, 255)
        y0, y1 = max(0, cy - radius), min(h, cy + radius + 1)
        x0, x1 = max(0, cx - radius), min(w, cx + radius + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius
        image[y0:y1, x0:x1][inside] = colour


def tiny_scenarios() -> tuple[Scenario, ...]:
    """The same scenarios on the tiny models: 64 px, 2 denoising steps (CI, CPU); the live and
    other img2img scenarios keep their few steps (4)."""
    out = []
    for s in SCENARIOS:
        steps = s.steps if s.strength < 1.0 and s.mode != "upscale" else 2
        out.append(replace(s, width=64, height=64, steps=steps))
    return tuple(out)


def select(names: list[str] | None, tiny: bool) -> tuple[Scenario, ...]:
    """The scenarios to run, in the canonical order; guards against unknown names."""
    pool = tiny_scenarios() if tiny else SCENARIOS
    if not names:
        return pool
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"scenario={unknown[0]!r}: expected one of {', '.join(NAMES)}")
    return tuple(s for s in pool if s.name in names)
