"""What a denoise asks of ``pipelines.run_denoise``: the ``DenoiseTask`` (at the denoise size),
its ``ControlTask`` inputs (controlnet.py makes them) and the ``StepCallback`` told of every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from backend.engine.errors import InvalidRequest
from backend.engine.prompts import PromptEmbeds

# A denoising step callback: (step done, total steps, latents) -> None; may raise Cancelled.
StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass
class ControlTask:
    """One ControlNet input, already preprocessed, cropped and resized to the denoise size."""

    name: str
    controlnet: Any  # diffusers ControlNetModel
    image: np.ndarray  # (h, w, 3) uint8 RGB
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    mode: int | None = None  # a Union ControlNet's control mode (Flux.1 Union)


@dataclass
class DenoiseTask:
    """Everything one pipeline call needs, at the denoise (native) size."""

    kind: str  # txt2img | img2img | inpaint
    model: Any  # LoadedModel: name, family, inpaint, pipe
    width: int
    height: int
    embeds: PromptEmbeds
    seeds: list[int]
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "dpmpp_2m_karras"
    strength: float = 1.0
    image: np.ndarray | None = None  # (h, w, 3) uint8 RGB: img2img/inpaint source (seeds[0])
    mask: np.ndarray | None = None  # (h, w) float32 0..1: the denoise mask (inpaint)
    controls: list[ControlTask] = field(default_factory=list)
    # One source per seed when they differ (the fill noise under transparent pixels is seeded
    # per item); empty = ``image`` for every seed.
    item_images: list[np.ndarray] = field(default_factory=list)
    # img2img/inpaint starting noise (1, C, h/8, w/8) for every item, instead of the
    # generator's: a tile's crop of one field for a whole picture (tiled_refine.py).
    noise: torch.Tensor | None = None
    # One prompt encoding per seed when wildcards made the items differ; empty = ``embeds``.
    item_embeds: list[PromptEmbeds] = field(default_factory=list)
    # Scheduler config keys over the model's own (a style's prediction type).
    scheduler_overrides: dict[str, Any] = field(default_factory=dict)
    # Reference images (reference.py): extra call arguments, and a hook told the fraction of
    # the schedule about to run (per-step adapter weights for start/end windows).
    extra_kwargs: dict[str, Any] = field(default_factory=dict)
    before_step: Callable[[float], None] | None = None

    def sources(self) -> list[np.ndarray | None]:
        """The source image of each seed (None: no source given)."""
        if self.item_images:
            if len(self.item_images) != len(self.seeds):
                raise InvalidRequest(
                    "item_images",
                    len(self.item_images),
                    f"expected {len(self.seeds)} (one per seed)",
                )
            return list(self.item_images)
        return [self.image] * len(self.seeds)
