"""Guard clauses shared by the image modules: shape and dtype checks that name the parameter.

Every public image function checks its inputs with these before touching pixels, so a bad
array from a caller becomes an ``InvalidRequest`` naming the parameter instead of a numpy
broadcast error deep inside opencv.
"""

from __future__ import annotations

import numpy as np

from backend.engine.errors import InvalidRequest


def describe(array: object) -> str:
    """A short description of an array for error messages (never the pixels themselves)."""
    if isinstance(array, np.ndarray):
        return f"array shape={tuple(array.shape)} dtype={array.dtype}"
    return type(array).__name__


def check_image(
    field: str, image: object, channels: tuple[int, ...] = (3, 4), dtype: type = np.uint8
) -> np.ndarray:
    """Raise unless ``image`` is a non-empty (H, W, C) array of ``dtype`` with C in ``channels``."""
    if not isinstance(image, np.ndarray):
        raise InvalidRequest(field, describe(image), "expected a numpy array")
    if image.ndim != 3 or image.shape[2] not in channels:
        raise InvalidRequest(
            field, describe(image), f"expected shape (H, W, C) with C in {list(channels)}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidRequest(field, describe(image), "the image is empty")
    if image.dtype != dtype:
        raise InvalidRequest(field, describe(image), f"expected dtype {np.dtype(dtype)}")
    return image


def check_mask(
    field: str,
    mask: object,
    shape: tuple[int, int] | None = None,
    allow_float: bool = False,
) -> np.ndarray:
    """Raise unless ``mask`` is a non-empty (H, W) uint8 array (or float in [0, 1] if allowed)
    whose shape equals ``shape`` when given."""
    if not isinstance(mask, np.ndarray):
        raise InvalidRequest(field, describe(mask), "expected a numpy array")
    if mask.ndim != 2:
        raise InvalidRequest(field, describe(mask), "expected shape (H, W)")
    if mask.shape[0] == 0 or mask.shape[1] == 0:
        raise InvalidRequest(field, describe(mask), "the mask is empty")
    floats = allow_float and mask.dtype in (np.float32, np.float64)
    if mask.dtype != np.uint8 and not floats:
        allowed = "uint8 or float32 in [0, 1]" if allow_float else "uint8"
        raise InvalidRequest(field, describe(mask), f"expected dtype {allowed}")
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise InvalidRequest(
            field, describe(mask), f"size must match the image: expected (H, W) = {tuple(shape)}"
        )
    return mask


def mask_to_float(mask: np.ndarray) -> np.ndarray:
    """A checked mask as float32 in [0, 1] (uint8 255 = 1.0)."""
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def check_size(field: str, value: object, minimum: int = 1) -> int:
    """Raise unless ``value`` is an int >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidRequest(field, value, f"expected an integer >= {minimum}")
    return int(value)
