"""Colour spaces for the fake ``krita``: pixel layouts and conversions as Krita 5.1.5 has them.

What real Krita does (/work/shared/notes/krita-facts.md, checked in 5.1.5): ``pixelData`` is
in the node's colour space — RGBA U8 4 bytes/pixel (B,G,R,A), U16 8 (B,G,R,A), F16 8 and F32
16 (R,G,B,A), GRAYA U8 2, GRAYA U16 4, CMYKA U8 5 (C,M,Y,K,A), LABA U16 8 (L,a,b,A). A new
document with no profile named gets Krita's default: RGBA U16/F16/F32 the *linear*
``sRGB-elle-V2-g10.icc``, RGBA U8 ``sRGB-elle-V2-srgbtrc.icc``, GRAYA U8 the sRGB-curve grey,
GRAYA U16 the linear grey, CMYKA "Chemical proof", LABA "Lab identity built-in".

The conversions are plain formulas (sRGB curve, luminance grey, naive CMYK, CIE Lab with D65)
— close enough to LCMS for tests, and exact round trips for 8-bit sRGB through every space
that has at least 8 bits per channel of the same colour (RGBA at any depth).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SRGB = "sRGB-elle-V2-srgbtrc.icc"
LINEAR = "sRGB-elle-V2-g10.icc"

DEFAULT_PROFILES = {
    ("RGBA", "U8"): SRGB,
    ("RGBA", "U16"): LINEAR,
    ("RGBA", "F16"): LINEAR,
    ("RGBA", "F32"): LINEAR,
    ("GRAYA", "U8"): "Gray-D50-elle-V2-srgbtrc.icc",
    ("GRAYA", "U16"): "Gray-D50-elle-V2-g10.icc",
    ("CMYKA", "U8"): "Chemical proof",
    ("LABA", "U16"): "Lab identity built-in",
}
CHANNELS = {"RGBA": 4, "GRAYA": 2, "CMYKA": 5, "LABA": 4}
SIZE = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
CODE = {"U8": "B", "U16": "H", "F16": "e", "F32": "f"}


@dataclass(frozen=True)
class Space:
    model: str
    depth: str
    profile: str

    @classmethod
    def make(cls, model: str, depth: str, profile: str = "") -> Space:
        if (model, depth) not in DEFAULT_PROFILES:
            raise ValueError(f"the fake krita has no colour space {model}/{depth}")
        return cls(model, depth, profile or DEFAULT_PROFILES[(model, depth)])

    @property
    def bpp(self) -> int:
        return CHANNELS[self.model] * SIZE[self.depth]

    @property
    def linear(self) -> bool:
        return "g10" in self.profile

    def is_srgb8(self) -> bool:
        return self.model == "RGBA" and self.depth == "U8" and not self.linear


def to_linear(v: float) -> float:
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def to_srgb(v: float) -> float:
    v = min(1.0, max(0.0, v))
    return v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def _unpack(space: Space, data: bytes) -> list[float]:
    """Every channel value of ``data`` as a float 0..1 (floats as stored)."""
    count = len(data) // SIZE[space.depth]
    values = struct.unpack(f"<{count}{CODE[space.depth]}", data)
    if space.depth == "U8":
        return [v / 255.0 for v in values]
    if space.depth == "U16":
        return [v / 65535.0 for v in values]
    return [float(v) for v in values]


def _pack(space: Space, values: list[float]) -> bytes:
    if space.depth in ("U8", "U16"):
        top = 255 if space.depth == "U8" else 65535
        ints = [int(round(min(1.0, max(0.0, v)) * top)) for v in values]
        return struct.pack(f"<{len(ints)}{CODE[space.depth]}", *ints)
    return struct.pack(f"<{len(values)}{CODE[space.depth]}", *values)


_WHITE = (0.9505, 1.0, 1.089)


def _lab_f(t: float) -> float:
    return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116


def _lab_f_inv(t: float) -> float:
    return t**3 if t > 0.206893 else (t - 16 / 116) / 7.787


def _rgb_to_lab(r: float, g: float, b: float) -> tuple[float, float, float]:
    x = 0.4124 * r + 0.3576 * g + 0.1805 * b
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = 0.0193 * r + 0.1192 * g + 0.9505 * b
    fx, fy, fz = (_lab_f(v / w) for v, w in zip((x, y, z), _WHITE, strict=True))
    lum, a, bb = 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
    return lum / 100.0, (a + 128) / 255.0, (bb + 128) / 255.0  # Krita's U16 Lab encoding


def _lab_to_rgb(lum: float, a: float, bb: float) -> tuple[float, float, float]:
    fy = (lum * 100 + 16) / 116
    fx, fz = fy + (a * 255 - 128) / 500, fy - (bb * 255 - 128) / 200
    x, y, z = (_lab_f_inv(f) * w for f, w in zip((fx, fy, fz), _WHITE, strict=True))
    r = 3.2406 * x - 1.5372 * y - 0.4986 * z
    g = -0.9689 * x + 1.8758 * y + 0.0415 * z
    b = 0.0557 * x - 0.2040 * y + 1.0570 * z
    return r, g, b


def decode(space: Space, data: bytes) -> list[tuple[float, float, float, float]]:
    """Pixels of ``space`` → (r, g, b, a) with r, g, b *sRGB-encoded* 0..1."""
    v = _unpack(space, data)
    n = CHANNELS[space.model]
    out = []
    for i in range(0, len(v), n):
        px = v[i : i + n]
        if space.model == "RGBA":
            r, g, b, a = (px[2], px[1], px[0], px[3]) if space.depth in ("U8", "U16") else px
            if space.linear:
                r, g, b = to_srgb(r), to_srgb(g), to_srgb(b)
        elif space.model == "GRAYA":
            r = g = b = to_srgb(px[0]) if space.linear else px[0]
            a = px[1]
        elif space.model == "CMYKA":
            c, m, y, k, a = px
            r, g, b = ((1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k))
        else:  # LABA
            lr, lg, lb = _lab_to_rgb(px[0], px[1], px[2])
            r, g, b, a = to_srgb(lr), to_srgb(lg), to_srgb(lb), px[3]
        out.append((r, g, b, a))
    return out


def encode(space: Space, pixels: list[tuple[float, float, float, float]]) -> bytes:
    """(r, g, b, a) sRGB-encoded 0..1 → bytes in ``space``."""
    values: list[float] = []
    for r, g, b, a in pixels:
        if space.model == "RGBA":
            if space.linear:
                r, g, b = to_linear(r), to_linear(g), to_linear(b)
            values += [b, g, r, a] if space.depth in ("U8", "U16") else [r, g, b, a]
        elif space.model == "GRAYA":
            lum = 0.2126 * to_linear(r) + 0.7152 * to_linear(g) + 0.0722 * to_linear(b)
            values += [lum if space.linear else to_srgb(lum), a]
        elif space.model == "CMYKA":
            k = 1 - max(r, g, b)
            d = 1 - k if k < 1 else 1.0
            values += [(1 - r - k) / d, (1 - g - k) / d, (1 - b - k) / d, k, a]
        else:
            values += [*_rgb_to_lab(to_linear(r), to_linear(g), to_linear(b)), a]
    return _pack(space, values)


def to_bgra8(space: Space, data: bytes) -> bytes:
    """Bytes of ``space`` → 8-bit sRGB BGRA (what Document.projection gives, as bytes)."""
    if space.is_srgb8():
        return data
    return encode(Space.make("RGBA", "U8"), decode(space, data))


def from_bgra8(space: Space, data: bytes) -> bytes:
    if space.is_srgb8():
        return data
    return encode(space, decode(Space.make("RGBA", "U8"), data))


def convert(src: Space, dst: Space, data: bytes) -> bytes:
    if src == dst:
        return data
    return encode(dst, decode(src, data))
