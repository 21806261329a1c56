"""Control layers to ControlNet inputs: the type's map, fitted to the denoise crop and size.

Each control image arrives at the request's region size. Its map (``preprocess.py``, unless
``preprocess`` is off and the image already is a map) is cropped and resized exactly like the
image being denoised, so the map lines up with the pixels pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from backend.engine import families
from backend.engine.errors import InvalidRequest
from backend.engine.pipelines import ControlTask
from backend.engine.preprocess import DepthEstimator, preprocess
from backend.engine.types import ControlInput

# Region-size RGB map -> (native_h, native_w, 3) uint8 at the denoise crop and size.
FitFunction = Callable[[np.ndarray], np.ndarray]


def control_map(control: ControlInput, depth_estimator: DepthEstimator | None = None) -> np.ndarray:
    """The RGB uint8 map a ControlNet sees for ``control`` at the region's size."""
    if control.preprocess:
        return preprocess(control.type, control.image, depth_estimator)
    # A ready map: transparent pixels count as black (no control there).
    image = control.image
    if image.shape[2] == 3:
        return image.copy()
    alpha = image[..., 3:4].astype(np.float32) / 255.0
    return np.round(image[..., :3].astype(np.float32) * alpha).astype(np.uint8)


def union_mode(controlnet: Any, family: str, control_type: str, field: str) -> int | None:
    """A Union ControlNet's control mode for ``control_type`` (None: not a Union model)."""
    if not getattr(getattr(controlnet, "config", None), "num_mode", None):
        return None
    modes = families.get(family).controlnet_modes
    if control_type not in modes:
        raise InvalidRequest(
            f"{field}.type",
            control_type,
            f"has no mode in this Union ControlNet (it takes {', '.join(sorted(modes))})",
        )
    return modes[control_type]


def prepare_controls(
    models: Any,
    family: str,
    controls: list[ControlInput],
    fit: FitFunction,
    depth_estimator: DepthEstimator | None = None,
) -> list[ControlTask]:
    """One ``ControlTask`` per control: its ControlNet (resolved by name or by type for the
    model's family), its fitted map and its strength and guidance window."""
    tasks: list[ControlTask] = []
    for index, control in enumerate(controls):
        field = f"controls[{index}]"
        entry = models.resolve_controlnet(family, control.type, control.model, field)
        try:
            image = fit(control_map(control, depth_estimator))
        except InvalidRequest as exc:
            raise exc.at(field) from exc
        controlnet = models.controlnet(entry.name)
        tasks.append(
            ControlTask(
                name=entry.name,
                controlnet=controlnet,
                image=image,
                scale=float(control.strength),
                start=float(control.start),
                end=float(control.end),
                mode=union_mode(controlnet, family, control.type, field),
            )
        )
    return tasks
