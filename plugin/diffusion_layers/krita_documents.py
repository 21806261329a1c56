"""Krita documents for Upscale and Edit: what the source is, the active layer's bounds, the
facts of a reference layer (where its pixels are, whether it shows), and the new document an
upscale opens. No ``krita`` import: krita_adapter hands Krita's application object
in (``KritaCanvas.documents()``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

from . import colour_io, node_tree
from .colour_io import SRGB8, ColourSpace
from .errors import NoDocument
from .geometry import Rect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceInfo:
    """What a new document takes from the one it was made from."""

    name: str
    space: ColourSpace
    resolution: float  # pixels per inch


@dataclass(frozen=True)
class LayerFacts:
    """A layer named by the artist (an edit reference), as the checks before sending need it."""

    name: str
    bounds: Optional[Rect]  # its pixels on the canvas (clipped to it); None: empty there
    hidden_by: str  # "" when it shows, else the hidden layer or group (itself or above it)
    mask: bool  # a mask, not a layer


def doc_key(doc: Any) -> str:
    """A document's key: its root node's uniqueId (the plugin's name for it)."""
    return str(doc.rootNode().uniqueId().toString())


class NewDocument:
    """A document made by script. The pixels go into a layer outside the tree, which
    ``show()`` then puts in place of Krita's default layer and gives the document a view:
    Krita renders an added layer in the background, while ``refreshProjection`` would
    recomposite the whole picture on the UI thread (seconds at 4500x3000)."""

    def __init__(self, app: Any, doc: Any, layer_name: str) -> None:
        self._app = app
        self._doc = doc
        self.key = doc_key(doc)
        self._node = doc.createNode(layer_name, "paintlayer")

    def is_open(self) -> bool:
        return any(doc_key(d) == self.key for d in self._app.documents())

    def write(self, bgra: bytes, rect: Rect) -> None:
        """8-bit sRGB BGRA over ``rect``, converted by Krita to the document's colour space."""
        colour_io.write_node(self._app, self._node, bgra, rect, self.is_open)

    def show(self) -> None:
        if not self.is_open():
            raise NoDocument("The new document was closed before the upscale was written.")
        root = self._doc.rootNode()
        defaults = list(root.childNodes())
        root.addChildNode(self._node, defaults[-1] if defaults else None)
        for node in defaults:  # Krita's empty or white default layer
            node.remove()
        self._doc.setActiveNode(self._node)
        self._doc.setModified(True)  # a new, unsaved picture: Krita asks before closing it
        window = self._app.activeWindow()
        if window is not None:
            window.addView(self._doc)

    def close(self) -> None:
        """Drop a half-written document (an error while writing)."""
        if self.is_open():
            self._doc.setModified(False)
            self._doc.close()


class LayerDraft:
    """A paint layer outside the tree, written strip by strip (``write``: 8-bit sRGB BGRA
    over a rect, converted by Krita to the document's colour space); the adapter puts
    ``node`` into the tree once it is complete, so a half-written layer is never seen and a
    dropped one leaves nothing behind."""

    def __init__(self, app: Any, doc: Any, name: str, is_open: Any) -> None:
        self._app = app
        self._is_open = is_open
        self.node = doc.createNode(name, "paintlayer")

    def write(self, bgra: bytes, rect: Rect) -> None:
        colour_io.write_node(self._app, self.node, bgra, rect, self._is_open)


class KritaDocuments:
    def __init__(self, app: Any) -> None:
        self._app = app

    def _find(self, key: str) -> Any:
        for doc in self._app.documents():
            if doc_key(doc) == key:
                return doc
        raise NoDocument("The document was closed.")

    def source(self, key: str) -> SourceInfo:
        doc = self._find(key)
        name = str(doc.name() or "") or os.path.splitext(os.path.basename(str(doc.fileName())))[0]
        return SourceInfo(name or "Untitled", ColourSpace.of(doc), float(doc.resolution() or 72))

    def layer_bounds(self, key: str) -> Optional[Rect]:
        """The active layer's pixel bounds clipped to the canvas; None without an active
        layer or when it is empty there."""
        doc = self._find(key)
        node = doc.activeNode()
        if node is None:
            return None
        b = node.bounds()
        rect = Rect(int(b.x()), int(b.y()), int(b.width()), int(b.height()))
        inside = rect.intersected(Rect(0, 0, int(doc.width()), int(doc.height())))
        return None if inside.is_empty() else inside

    def layer_facts(self, key: str, ref: str) -> Optional[LayerFacts]:
        """The layer ``ref`` (uniqueId, else name) of document ``key``; None when there is none."""
        doc = self._find(key)
        root = doc.rootNode()
        node = node_tree.find(root, ref)
        if node is None:
            return None
        b = node.bounds()
        rect = Rect(int(b.x()), int(b.y()), int(b.width()), int(b.height()))
        inside = rect.intersected(Rect(0, 0, int(doc.width()), int(doc.height())))
        hidden = node_tree.hidden_by(node, root)
        return LayerFacts(
            str(node.name()),
            None if inside.is_empty() else inside,
            "" if hidden is None else str(hidden.name()),
            node_tree.is_mask(node),
        )

    def create(self, width: int, height: int, name: str, source: SourceInfo) -> NewDocument:
        """A document of exactly ``width`` x ``height`` in the source's colour space (8-bit
        sRGB where Krita cannot make that space), at ``source.resolution``."""
        space = source.space
        doc = self._app.createDocument(
            width, height, name, space.model, space.depth, space.profile, source.resolution
        )
        if doc is None:
            log.warning("Krita could not create a %s document; using 8-bit sRGB", space)
            doc = self._app.createDocument(
                width, height, name, SRGB8.model, SRGB8.depth, SRGB8.profile, source.resolution
            )
        if doc is None:
            raise NoDocument(
                f"Krita could not create a {width}x{height} document: close other documents "
                "to free memory, or choose a smaller factor."
            )
        return NewDocument(self._app, doc, name)
