"""The image parts of a job: which ones its mode and controls use, the region's size, and the
decoded pixels of each.

* Every part must be used: an ``image`` on txt2img, a ``mask`` on txt2img/img2img, a control
  part no control names, or an unknown name is a 422 naming the part (used_inputs.py).
* The region's size is ``width`` x ``height`` from the params; either may be left out when the
  ``image`` part is an image file (PNG, JPEG, WebP), which carries its size (upright, after
  its EXIF orientation). txt2img and raw image parts need both: "width: required".
* Image and mask are exactly the region's size. A control image of another size is scaled to
  **cover** the region (aspect ratio kept, the overflow cropped evenly from both sides, like
  A1111's "crop and resize"); raw control parts are exactly the region's size.
* One part may serve several controls (decoded once).
"""

from __future__ import annotations

import numpy as np

from backend.api.errors import PayloadTooLarge, Unprocessable
from backend.api.images import decode_image, file_size, is_file_type
from backend.api.multipart import Part
from backend.engine.compositing import resize_cover
from backend.engine.types import InpaintSettings
from backend.engine.used_inputs import IMAGE_MODES, unused_inputs

JOB_PARTS = ("params", "image", "mask")


def check_parts(
    mode: str,
    parts: dict[str, Part],
    control_parts: list[str],
    inpaint: InpaintSettings | None = None,
) -> None:
    """422 for a part (or inpaint option) nobody would read, and for a missing control part."""
    # 1. Parts and options the mode would ignore.
    unused = unused_inputs(mode, "image" in parts, "mask" in parts, inpaint)
    if unused:
        field, reason = unused[0]
        where = f"part {field!r}" if field in JOB_PARTS else field
        raise Unprocessable(f"{where}: {reason}", field=field)
    # 2. Parts nobody names.
    for name in parts:
        if name in JOB_PARTS or name in control_parts:
            continue
        if name.startswith("control_"):
            raise Unprocessable(
                f"part {name!r}: no control uses it (each controls[i].image names its part); "
                "add the control or leave the part out",
                field=name,
            )
        raise Unprocessable(
            f"part {name!r}: not a part of this request (expected params, image, mask and "
            "the control parts named by controls[i].image)",
            field=name,
        )
    # 3. Parts that are named but missing.
    for index, name in enumerate(control_parts):
        if name not in parts:
            raise Unprocessable(
                f"controls[{index}].image={name!r}: no multipart part of that name",
                field=f"controls[{index}].image",
            )


def region_size(
    width: int | None, height: int | None, mode: str, image: Part | None, max_pixels: int
) -> tuple[int, int]:
    """(width, height) of the region: the params', else the image file's own."""
    if width is not None and height is not None:
        return width, height
    missing = "width" if width is None else "height"
    if image is None:
        if mode in IMAGE_MODES:
            raise Unprocessable(
                f"image: {mode} needs the region's pixels as an 'image' part", field="image"
            )
        raise Unprocessable(
            f"{missing}: required ({mode} has no image part to take the size from)", field=missing
        )
    declared = file_size(image.view, image.content_type, "image")
    if declared is None:
        raise Unprocessable(
            f"{missing}: required (the image part is raw pixels, which do not carry their size)",
            field=missing,
        )
    if declared[0] * declared[1] > max_pixels:
        raise PayloadTooLarge(
            f"image: {declared[0]}x{declared[1]} = {declared[0] * declared[1]} pixels is over "
            f"the server's limit of {max_pixels}",
            field="image",
        )
    return (width or declared[0], height or declared[1])


def decode_control(
    part: Part, name: str, size: tuple[int, int], max_pixels: int, own_size: bool = False
) -> np.ndarray:
    """A control part as RGBA at the region's size (files of another size: scaled to cover);
    ``own_size``: a file keeps its own size (an edit's reference image)."""
    if not is_file_type(part.content_type):
        return decode_image(part.view, part.content_type, name, size, max_pixels)
    pixels = decode_image(part.view, part.content_type, name, None, max_pixels)
    if (pixels.shape[1], pixels.shape[0]) != size and not own_size:
        pixels = resize_cover(pixels, *size)
    return pixels


def decode_controls(
    control_parts: list[str],
    parts: dict[str, Part],
    size: tuple[int, int],
    max_pixels: int,
    own_size: frozenset[str] = frozenset(),
) -> list[np.ndarray]:
    """The pixels of each control, in order; a part named twice is decoded once. Image files
    of the parts in ``own_size`` keep their size (mode edit's reference images)."""
    decoded: dict[str, np.ndarray] = {}
    for name in control_parts:
        if name not in decoded:
            keep = name in own_size
            decoded[name] = decode_control(parts[name], name, size, max_pixels, keep)
    return [decoded[name] for name in control_parts]
