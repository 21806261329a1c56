"""Control preprocessing: turn a control layer into the map a ControlNet model expects.

Every map is RGB uint8 (H, W, 3), the size of the input. Line maps (canny, scribble, lineart,
softedge) are white lines on black, whatever the artist drew: dark lines on white paper,
light lines on dark, or strokes on a transparent layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from backend.engine.errors import InvalidRequest, ModelLoadError, ModelNotFound
from backend.engine.image_checks import check_image

#: Control type -> the preprocessor that makes its map.
PREPROCESSORS: dict[str, str] = {
    "canny": "canny",
    "scribble": "sketch_binary",
    "lineart": "sketch_lines",
    "softedge": "sketch_soft",
    "depth": "depth_estimator",
    "normal": "passthrough",
    "pose": "passthrough",
    "tile": "tile_blur",
}

#: Control type -> the keyword options its preprocessor takes (anything else is refused).
OPTIONS: dict[str, tuple[str, ...]] = {
    "canny": ("low", "high"),
    "scribble": ("threshold", "thickness"),
    "lineart": (),
    "softedge": ("soften",),
    "depth": (),
    "normal": (),
    "pose": (),
    "tile": ("blur",),
}

DepthEstimator = Callable[[np.ndarray], np.ndarray]
NO_DEPTH = (
    "no depth estimator is configured: send a ready depth map with preprocess off "
    "or put a depth model in models/depth/"
)


def _over(image: np.ndarray, backdrop: float) -> np.ndarray:
    """RGB float32 0..255 of an RGB(A) image composited over a flat grey level."""
    rgb = image[..., :3].astype(np.float32)
    if image.shape[2] == 3:
        return rgb
    a = image[..., 3:4].astype(np.float32) / 255.0
    return rgb * a + backdrop * (1.0 - a)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _gray3(gray: np.ndarray) -> np.ndarray:
    g = np.round(np.clip(gray, 0.0, 255.0)).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def sketch_lines(image: np.ndarray) -> np.ndarray:
    """float32 (H, W) 0..255: the strokes of a sketch as white on black.

    1. On a layer with transparency (> 1 % of pixels below half alpha) the strokes are the
       painted pixels: light strokes are composited over black, dark ones over white.
    2. The paper colour (the median luminance) sets the polarity: light paper is inverted.
    3. Levels are stretched so the paper is 0 and the strongest strokes 255.
    """
    if image.shape[2] == 4 and np.mean(image[..., 3] < 128) > 0.01:
        painted = image[..., 3] >= 128
        stroke_luma = (
            float(np.median(_luma(image[..., :3][painted].astype(np.float32))))
            if painted.any()
            else 0.0
        )
        gray = _luma(_over(image, 0.0 if stroke_luma > 127 else 255.0))
    else:
        gray = _luma(_over(image, 255.0))
    paper = float(np.median(gray))
    lines = 255.0 - gray if paper > 127 else gray
    low = float(np.median(lines))
    high = float(np.percentile(lines, 99.9))
    if high - low < 1.0:
        return np.zeros_like(lines)
    return np.clip((lines - low) * (255.0 / (high - low)), 0.0, 255.0)


def _canny(image: np.ndarray, low: int = 100, high: int = 200, **_: Any) -> np.ndarray:
    for name, value in (("low", low), ("high", high)):
        if not 0 <= value <= 1000:
            raise InvalidRequest(f"controls[].{name}", value, "expected a threshold 0..1000")
    gray = np.round(_luma(_over(image, 255.0))).astype(np.uint8)
    return _gray3(cv2.Canny(gray, int(low), int(high)))


def _scribble(
    image: np.ndarray, threshold: float = 0.5, thickness: int = 1, **_: Any
) -> np.ndarray:
    if not 0.0 < threshold < 1.0:
        raise InvalidRequest("controls[].threshold", threshold, "expected 0 < threshold < 1")
    lines = cv2.GaussianBlur(sketch_lines(image), (0, 0), 0.8)
    binary = np.where(lines >= threshold * 255.0, 255, 0).astype(np.uint8)
    if thickness > 1:
        size = 2 * (thickness // 2) + 1
        binary = cv2.dilate(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return _gray3(binary)


def _lineart(image: np.ndarray, **_: Any) -> np.ndarray:
    return _gray3(sketch_lines(image))


def _softedge(image: np.ndarray, soften: float = 2.0, **_: Any) -> np.ndarray:
    if not 0.0 <= soften <= 32.0:
        raise InvalidRequest("controls[].soften", soften, "expected 0..32 px")
    lines = sketch_lines(image)
    if soften > 0:
        lines = cv2.GaussianBlur(lines, (0, 0), soften)
        peak = float(lines.max())
        lines = lines * (255.0 / peak) if peak > 0 else lines
    return _gray3(lines)


def _tile(image: np.ndarray, blur: float = 1.0, **_: Any) -> np.ndarray:
    rgb = _over(image, 255.0)
    if blur > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), blur)
    return np.round(np.clip(rgb, 0.0, 255.0)).astype(np.uint8)


def _passthrough(image: np.ndarray, **_: Any) -> np.ndarray:
    return np.round(_over(image, 0.0)).astype(np.uint8)


def _depth(image: np.ndarray, estimator: DepthEstimator | None) -> np.ndarray:
    if estimator is None:
        raise InvalidRequest("controls[].preprocess", True, NO_DEPTH)
    rgb = np.round(_over(image, 255.0)).astype(np.uint8)
    depth = np.asarray(estimator(rgb), dtype=np.float32)
    if depth.ndim == 3:
        depth = depth.mean(axis=2)
    if depth.ndim != 2 or depth.size == 0:
        raise InvalidRequest("depth_estimator", depth.shape, "expected an (H, W) depth map")
    height, width = image.shape[:2]
    if depth.shape != (height, width):
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(depth.min()), float(depth.max())
    if high - low < 1e-6:
        return np.zeros((height, width, 3), np.uint8)
    return _gray3((depth - low) * (255.0 / (high - low)))


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "canny": _canny,
    "scribble": _scribble,
    "lineart": _lineart,
    "softedge": _softedge,
    "normal": _passthrough,
    "pose": _passthrough,
    "tile": _tile,
}


def preprocess(
    control_type: str,
    image: np.ndarray,
    depth_estimator: DepthEstimator | None = None,
    **options: Any,
) -> np.ndarray:
    """The control map for ``control_type`` as RGB uint8 (H, W, 3).

    Options: canny ``low``/``high`` (100/200); scribble ``threshold`` (0.5, of full white)
    and ``thickness`` (1 px); softedge ``soften`` (2.0 px sigma); tile ``blur`` (1.0 px).
    Depth calls ``depth_estimator(rgb) -> (H, W)`` (larger = nearer, as MiDaS/DPT give) and
    scales it to 0..255 (near = white).
    """
    if control_type not in PREPROCESSORS:
        raise InvalidRequest(
            "controls[].type", control_type, f"expected one of {sorted(PREPROCESSORS)}"
        )
    check_image("image", image)
    unknown = sorted(set(options) - set(OPTIONS[control_type]))
    if unknown:
        raise InvalidRequest(
            f"controls[].{unknown[0]}",
            options[unknown[0]],
            f"not an option of {control_type!r}; expected one of {list(OPTIONS[control_type])}",
        )
    if control_type == "depth":
        return _depth(image, depth_estimator)
    return _FUNCTIONS[control_type](image, **options)


def load_depth_estimator(path: str, device: str) -> DepthEstimator:
    """A depth estimator from a LOCAL transformers depth model folder (config.json, weights,
    preprocessor_config.json), e.g. models/depth/<name>/. Never downloads."""
    # 1. Check the folder.
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelNotFound(f"no depth model folder with a config.json at {path!r}")
    # 2. Load offline.
    try:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

        # Model and processor loaded here, offline: transformers 5's pipeline() takes
        # local_files_only itself and 4.x only through model_kwargs.
        model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        estimator = pipeline(
            "depth-estimation", model=model, image_processor=processor, device=device
        )
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(f"could not load the depth model at {path!r}: {error}") from error

    # 3. The callable: RGB uint8 -> float32 (H, W), larger = nearer.
    def estimate(rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        with torch.inference_mode():
            result = estimator(Image.fromarray(rgb[..., :3]))
        predicted = result["predicted_depth"]
        depth = predicted.float().squeeze().cpu().numpy()
        return np.asarray(depth, dtype=np.float32)

    return estimate
