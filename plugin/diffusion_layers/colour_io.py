"""Pixels in and out of Krita in 8-bit sRGB BGRA, whatever the colour space: Krita converts.

The plugin and the server work in 8-bit sRGB BGRA (straight alpha). A Krita document or layer
can be in any colour model (RGBA, GRAYA, CMYKA, LABA, XYZA, YCbCrA), depth (U8, U16, F16, F32)
and profile — a new 16-bit or float RGB document gets the *linear* ``sRGB-elle-V2-g10.icc``.
Every conversion is done by Krita's own colour engine, none by arithmetic here:

* **the image** (``read_image``): ``Document.projection(x, y, w, h)`` is the visible image as
  an 8-bit sRGB ``QImage`` for every model and depth;
* **a layer** (``read_node``): its bytes (in its own colour space) go into a scratch document
  created in that colour space, whose projection is the 8-bit sRGB image;
* **a result** (``write_node``): the 8-bit sRGB pixels go into a scratch 8-bit sRGB document
  whose layer ``Node.setColorSpace`` converts to the target layer's colour space; those bytes
  are then set on the target layer, so a result is stored in the document's own colour space.

Scratch documents get no view and are closed at once. Krita records a colour conversion as an
undo step even on a layer outside the tree, so it happens in the scratch document's history,
never in the artist's: applying a result stays one undo step. Documents and layers that already
are 8-bit sRGB RGBA skip all this (their bytes are BGRA8 as they are). No ``krita`` import: the
adapter passes the ``Krita`` instance in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import NoDocument, UnsupportedDocument
from .geometry import Rect
from .pixels import bgra_to_qimage, qimage_to_bgra
from .qt import QByteArray, QImage, QPainter

SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
SRGB_PROFILES = (SRGB_PROFILE, "sRGB built-in")


@dataclass(frozen=True)
class ColourSpace:
    model: str  # RGBA, GRAYA, CMYKA, LABA, XYZA, YCbCrA
    depth: str  # U8, U16, F16, F32
    profile: str

    @classmethod
    def of(cls, item: Any) -> "ColourSpace":
        """The colour space of a libkis Document or Node."""
        return cls(str(item.colorModel()), str(item.colorDepth()), str(item.colorProfile()))

    def is_srgb8(self) -> bool:
        """Bytes in this space already are 8-bit sRGB BGRA."""
        return self.model == "RGBA" and self.depth == "U8" and self.profile in SRGB_PROFILES

    def __str__(self) -> str:
        return f"{self.model}/{self.depth} ({self.profile})"


SRGB8 = ColourSpace("RGBA", "U8", SRGB_PROFILE)


def _scratch(app: Any, width: int, height: int, space: ColourSpace) -> Any:
    doc = app.createDocument(
        width, height, "diffusion-layers-colour", space.model, space.depth, space.profile, 72.0
    )
    if doc is None:
        raise UnsupportedDocument(
            f"Krita could not convert colours from or to {space}: convert the image to "
            "RGB/Alpha (Image ▸ Convert Image Color Space) and try again."
        )
    return doc


def _close(doc: Any) -> None:
    doc.setModified(False)
    doc.close()


def _layer(doc: Any) -> Any:
    layers = doc.rootNode().childNodes()
    if layers:
        return layers[0]
    node = doc.createNode("pixels", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    return node


def to_srgb8(app: Any, raw: bytes, width: int, height: int, space: ColourSpace) -> bytes:
    """Bytes of a ``width`` x ``height`` area in ``space`` → 8-bit sRGB BGRA."""
    if space.is_srgb8():
        return raw
    scratch = _scratch(app, width, height, space)
    try:
        _layer(scratch).setPixelData(QByteArray(raw), 0, 0, width, height)
        scratch.refreshProjection()
        scratch.waitForDone()
        return qimage_to_bgra(scratch.projection(0, 0, width, height))
    finally:
        _close(scratch)


def from_srgb8(app: Any, bgra: bytes, width: int, height: int, space: ColourSpace) -> bytes:
    """8-bit sRGB BGRA of a ``width`` x ``height`` area → bytes in ``space``."""
    if space.is_srgb8():
        return bgra
    scratch = _scratch(app, width, height, SRGB8)
    try:
        layer = _layer(scratch)
        layer.setPixelData(QByteArray(bgra), 0, 0, width, height)
        if not layer.setColorSpace(space.model, space.depth, space.profile):
            raise UnsupportedDocument(
                f"Krita could not convert the result to {space}: convert the image to "
                "RGB/Alpha (Image ▸ Convert Image Color Space) and try again."
            )
        scratch.waitForDone()
        return bytes(layer.pixelData(0, 0, width, height))
    finally:
        _close(scratch)


def _padded(part: bytes, inside: Rect, rect: Rect) -> bytes:
    """``part`` (BGRA8 of ``inside``) placed in a transparent ``rect``."""
    image = QImage(rect.width, rect.height, QImage.Format.Format_ARGB32)
    image.fill(0)
    if not inside.is_empty():
        painter = QPainter(image)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(
            inside.x - rect.x, inside.y - rect.y, bgra_to_qimage(part, inside.width, inside.height)
        )
        painter.end()
    return qimage_to_bgra(image)


def read_image(doc: Any, canvas: Rect, rect: Rect) -> bytes:
    """The visible image over ``rect`` as 8-bit sRGB BGRA; off-canvas parts transparent."""
    inside = rect.intersected(canvas)
    part = b""
    if not inside.is_empty():
        x, y, w, h = inside.x, inside.y, inside.width, inside.height
        if ColourSpace.of(doc).is_srgb8():
            part = bytes(doc.pixelData(x, y, w, h))
        else:
            part = qimage_to_bgra(doc.projection(x, y, w, h))
    return part if inside == rect else _padded(part, inside, rect)


def read_node(app: Any, source: Any, canvas: Rect, rect: Rect) -> bytes:
    """``source.pixelData`` (a node or anything reading one, with the node's colour space)
    over ``rect`` as 8-bit sRGB BGRA; off-canvas parts transparent."""
    inside = rect.intersected(canvas)
    part = b""
    if not inside.is_empty():
        x, y, w, h = inside.x, inside.y, inside.width, inside.height
        part = to_srgb8(app, bytes(source.pixelData(x, y, w, h)), w, h, ColourSpace.of(source))
    return part if inside == rect else _padded(part, inside, rect)


def write_node(
    app: Any, node: Any, bgra: bytes, rect: Rect, alive: Callable[[], bool] = lambda: True
) -> None:
    """Set 8-bit sRGB BGRA pixels on ``node`` over ``rect``, converted to its colour space.

    The conversion can run Krita's event loop (its busy-wait on the scratch image processes
    events), where the artist may close the document: ``alive()`` is asked right before the
    write, and a closed document raises NoDocument instead of being written into."""
    data = from_srgb8(app, bgra, rect.width, rect.height, ColourSpace.of(node))
    if not alive():
        raise NoDocument("The document was closed.")
    node.setPixelData(QByteArray(data), rect.x, rect.y, rect.width, rect.height)
