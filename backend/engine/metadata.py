"""Result metadata in PNG files: the A1111 ``parameters`` text SD tools read, plus our JSON.

``parameters`` looks like::

    a cat on a sofa <lora:film:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, Model: dreamshaper, Denoising strength: 0.75, Clip skip: 2

The ``diffusion_layers`` chunk holds ``{"version": 1, "metadata": {...}, "offset": {"x", "y"}}``
with every field of ``ResultMetadata``, so a layer can be regenerated exactly.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, UnidentifiedImageError

from backend.engine.errors import InvalidRequest
from backend.engine.image_checks import check_image
from backend.engine.png_fast import encode_png_fast
from backend.engine.types import ResultMetadata

PARAMETERS_KEY = "parameters"
JSON_KEY = "diffusion_layers"
JSON_VERSION = 1

#: Our sampler ids -> the names A1111 writes (unknown ids are written as they are).
A1111_SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "lms_karras": "LMS Karras",
    "ddim": "DDIM",
    "pndm": "PLMS",
    "dpm2": "DPM2",
    "dpm2_karras": "DPM2 Karras",
    "dpm2_a": "DPM2 a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_karras": "DPM++ SDE Karras",
    "unipc": "UniPC",
    "lcm": "LCM",
    "ddpm": "DDPM",
}


def _number(value: float) -> str:
    """7.0 -> "7", 0.75 -> "0.75" (as A1111 writes them)."""
    return f"{float(value):g}"


def _quote(value: str) -> str:
    """Values holding the separators are JSON-quoted, as A1111 does."""
    if any(ch in value for ch in ',:"\n'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _lora_tags(meta: ResultMetadata) -> str:
    tags = []
    for lora in meta.loras:
        name = str(lora.get("name", ""))
        tag = f"<lora:{name}:{_number(lora.get('weight', 1.0))}>"
        if name and f"<lora:{name}:" not in meta.prompt:
            tags.append(tag)
    return " ".join(tags)


def parameters_text(meta: ResultMetadata) -> str:
    """The A1111 "parameters" text for one result (see the module docstring)."""
    # 1. Prompt line (LoRAs as A1111 <lora:name:weight> tags) and negative prompt.
    prompt = " ".join(part for part in (meta.prompt.strip(), _lora_tags(meta)) if part)
    lines = [prompt]
    if meta.negative_prompt.strip():
        lines.append(f"Negative prompt: {meta.negative_prompt.strip()}")
    # 2. The settings line.
    fields: list[tuple[str, str]] = [
        ("Steps", str(meta.steps)),
        ("Sampler", A1111_SAMPLERS.get(meta.sampler, meta.sampler)),
        ("CFG scale", _number(meta.cfg_scale)),
        ("Seed", str(meta.seed)),
        ("Size", f"{meta.width}x{meta.height}"),
        ("Model", meta.model),
    ]
    if meta.mode != "txt2img":
        fields.append(("Denoising strength", _number(meta.strength)))
    if meta.clip_skip > 1:
        fields.append(("Clip skip", str(meta.clip_skip)))
    if meta.prediction_type != "epsilon" or meta.zero_terminal_snr:
        fields.append(("Prediction", meta.prediction_type))
        fields.append(("Zero terminal SNR", str(meta.zero_terminal_snr)))
    for index, control in enumerate(meta.controls):
        described = ", ".join(
            f"{key.capitalize()}: {value}" for key, value in control.items() if key != "image"
        )
        fields.append((f"ControlNet {index}", described))
    fields.append(("Mode", meta.mode))
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in fields))
    return "\n".join(lines)


def png_text(
    meta: ResultMetadata | None,
    extra: dict[str, str] | None = None,
    offset: tuple[int, int] | None = None,
) -> list[tuple[str, str]]:
    """The text chunks of a result PNG: ``parameters`` and ``diffusion_layers`` when ``meta``
    is given (``offset`` = the layer's x, y in the region, in the JSON), then ``extra``."""
    text: list[tuple[str, str]] = []
    if meta is not None:
        text.append((PARAMETERS_KEY, parameters_text(meta)))
        payload: dict[str, object] = {"version": JSON_VERSION, "metadata": meta.to_dict()}
        if offset is not None:
            payload["offset"] = {"x": int(offset[0]), "y": int(offset[1])}
        text.append((JSON_KEY, json.dumps(payload, ensure_ascii=False)))
    for key, value in (extra or {}).items():
        if not key or len(key) > 79 or key in (PARAMETERS_KEY, JSON_KEY):
            raise InvalidRequest("extra", key, "expected a PNG text key of 1..79 chars, not ours")
        text.append((key, str(value)))
    return text


def encode_png(
    image: np.ndarray,
    meta: ResultMetadata | None,
    extra: dict[str, str] | None = None,
    compress_level: int = 1,
    offset: tuple[int, int] | None = None,
) -> bytes:
    """PNG bytes of an RGBA or RGB uint8 image, with the ``parameters`` and
    ``diffusion_layers`` text chunks when ``meta`` is given, ``offset`` (the layer's x, y in
    the region) in the JSON, and ``extra`` as further text chunks. Level 1 compresses fast,
    0 stores (see ``backend.engine.png_fast``: parallel deflate, tEXt/iTXt as PIL writes)."""
    check_image("image", image)
    if not 0 <= compress_level <= 9:
        raise InvalidRequest("compress_level", compress_level, "expected 0..9")
    return encode_png_fast(image, png_text(meta, extra, offset), level=compress_level)


def read_png_metadata(data: bytes) -> dict[str, str]:
    """All text chunks (tEXt/iTXt/zTXt) of a PNG as a dict."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise InvalidRequest("data", f"{image.format} image", "expected a PNG")
            image.load()
            text: dict = getattr(image, "text", {})  # PngImageFile: tEXt, zTXt and iTXt
            return {str(key): str(value) for key, value in text.items()}
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InvalidRequest(
            "data", f"{len(data)} bytes", f"not a readable PNG: {error}"
        ) from error
