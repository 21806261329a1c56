"""The only module that imports ``krita``: documents, layers, selection, settings, registration.

Pixels leave and enter here as 8-bit sRGB BGRA in every colour model, depth and profile: Krita
converts (``colour_io``). The image is read as it looks (its projection, converted to 8-bit
sRGB), a layer from its own colour space, and results are written in the layer's (= the
document's) colour space: RGBA U8/U16/F16/F32, GRAYA, CMYKA, LABA … all work.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from . import colour_io
from .canvas import NewLayer
from .geometry import Rect
from .live import LIVE_PREFIX
from .placement import PREVIEW_PREFIX
from .qt import QByteArray, QTimer
from .settings import GROUP

__all__ = [
    "DockWidget",
    "Extension",
    "KritaCanvas",
    "KritaDocument",
    "KritaSettingsStore",
    "register",
]

log = logging.getLogger(__name__)


def register(
    extension_factory: Callable[[Any], Extension], docker_id: str, docker_class: type
) -> None:
    """Add the extension and the docker factory to Krita (called from ``__init__``)."""
    app = Krita.instance()
    app.addExtension(extension_factory(app))
    app.addDockWidgetFactory(
        DockWidgetFactory(docker_id, DockWidgetFactoryBase.DockPosition.DockRight, docker_class)
    )


def find_extension(kind: type) -> Any:
    """The registered extension of that class (Krita keeps the Python object), or None."""
    for extension in Krita.instance().extensions():
        if isinstance(extension, kind):
            return extension
    return None


class KritaSettingsStore:
    """Krita.readSetting/writeSetting under the group ``diffusion_layers`` (kritarc)."""

    def read(self, key: str, default: str) -> str:
        return str(Krita.instance().readSetting(GROUP, key, default))

    def write(self, key: str, value: str) -> None:
        Krita.instance().writeSetting(GROUP, key, value)


def _key(doc: Any) -> str:
    return str(doc.rootNode().uniqueId().toString())


class KritaCanvas:
    def active_document(self) -> Optional["KritaDocument"]:
        doc = Krita.instance().activeDocument()
        return None if doc is None else KritaDocument(doc)

    def document(self, key: str) -> Optional["KritaDocument"]:
        for doc in Krita.instance().documents():
            if _key(doc) == key:
                return KritaDocument(doc)
        return None


class KritaDocument:
    def __init__(self, doc: Any) -> None:
        self._doc = doc
        self._key = _key(doc)

    @property
    def key(self) -> str:
        return self._key

    def is_open(self) -> bool:
        return any(_key(d) == self._key for d in Krita.instance().documents())

    def bounds(self) -> Rect:
        return Rect(0, 0, int(self._doc.width()), int(self._doc.height()))

    def check_supported(self) -> None:
        """Every colour model, depth and profile is supported: Krita converts (colour_io)."""

    def selection_bounds(self) -> Optional[Rect]:
        sel = self._doc.selection()
        if sel is None or sel.width() <= 0 or sel.height() <= 0:
            return None
        return Rect(int(sel.x()), int(sel.y()), int(sel.width()), int(sel.height()))

    def _read(self, source: Any, rect: Rect) -> bytes:
        """rect of the image (source: the document) or of a node as 8-bit sRGB BGRA; off-canvas
        parts come back transparent."""
        if source is self._doc:
            return colour_io.read_image(self._doc, self.bounds(), rect)
        return colour_io.read_node(Krita.instance(), source, self.bounds(), rect)

    def read_pixels(self, rect: Rect) -> bytes:
        if self._live_nodes():  # the live preview is not the artist's canvas
            return self.read_pixels_without_live(rect)
        return self._read(self._doc, rect)

    def read_selection(self, rect: Rect) -> bytes:
        sel = self._doc.selection()
        if sel is None:
            return b"\xff" * (rect.width * rect.height)
        return bytes(sel.pixelData(rect.x, rect.y, rect.width, rect.height))

    def _node(self, name: str) -> Any:
        return self._doc.nodeByName(name)

    def read_layer(self, name: str, rect: Rect) -> Optional[bytes]:
        node = self._node(name)
        return None if node is None else self._read(node, rect)

    def active_layer_id(self) -> str:
        node = self._doc.activeNode()
        return "" if node is None else str(node.uniqueId().toString())

    def active_layer_name(self) -> str:
        node = self._doc.activeNode()
        return "" if node is None else str(node.name())

    def _anchor(self) -> Tuple[Any, Any]:
        """(parent, sibling) to add a node directly above the active layer.

        While a preview is shown, the spot is the preview's own (it sits right above the layer
        that was active when it appeared), whatever Krita made active since.
        """
        previews = self._previews()
        if previews:
            preview = previews[0]
            parent = preview.parentNode() or self._doc.rootNode()
            siblings = parent.childNodes()
            ids = [str(n.uniqueId().toString()) for n in siblings]
            index = ids.index(str(preview.uniqueId().toString()))
            below = [n for n in siblings[:index] if not str(n.name()).startswith(PREVIEW_PREFIX)]
            return parent, (below[-1] if below else None)
        active = self._doc.activeNode()
        if active is None or active.parentNode() is None:
            return self._doc.rootNode(), None
        return active.parentNode(), active

    def _set_pixels(self, node: Any, layer: NewLayer) -> None:
        """BGRA8 sRGB → the node's (the document's) colour space, converted by Krita."""
        colour_io.write_node(Krita.instance(), node, layer.pixels, layer.rect)

    def _previews(self) -> List[Any]:
        return [
            n for n in self._doc.rootNode().childNodes() if str(n.name()).startswith(PREVIEW_PREFIX)
        ]

    def show_preview(self, layer: NewLayer) -> None:
        """Replace the preview (same spot); the artist's active layer stays active."""
        parent, above = self._anchor()
        active = self._doc.activeNode()
        self.remove_preview()
        node = self._doc.createNode(layer.name, "paintlayer")
        parent.addChildNode(node, above)
        self._set_pixels(node, layer)
        node.setLocked(True)
        if active is not None and not str(active.name()).startswith(PREVIEW_PREFIX):
            self._doc.setActiveNode(active)
        self._doc.refreshProjection()

    def remove_preview(self) -> None:
        for node in self._previews():
            node.remove()
        self._doc.refreshProjection()

    def add_layer(self, layer: NewLayer) -> str:
        """The layer goes where the preview was (above the active layer); the preview goes."""
        parent, above = self._anchor()
        self.remove_preview()
        node = self._doc.createNode(layer.name, "paintlayer")
        parent.addChildNode(node, above)  # the one undo step
        self._set_pixels(node, layer)
        self._doc.setActiveNode(node)
        self._doc.refreshProjection()
        return str(node.uniqueId().toString())

    def add_group(self, name: str, layers: List[NewLayer]) -> List[str]:
        parent, above = self._anchor()
        self.remove_preview()
        group = self._doc.createGroupLayer(name)
        ids: List[str] = []
        nodes = []
        for layer in layers:
            node = self._doc.createNode(layer.name, "paintlayer")
            group.addChildNode(node, nodes[-1] if nodes else None)
            nodes.append(node)
            ids.append(str(node.uniqueId().toString()))
        parent.addChildNode(group, above)
        for index, node in enumerate(nodes):
            self._set_pixels(node, layers[index])
        self._doc.refreshProjection()
        return ids

    def read_annotation(self, kind: str) -> bytes:
        data = self._doc.annotation(kind)
        return b"" if data is None else bytes(data)

    def write_annotation(self, kind: str, description: str, data: bytes) -> None:
        self._doc.setAnnotation(kind, description, QByteArray(data))
        self._doc.setModified(True)

    # -- live painting (see live.py) --------------------------------------------------------

    def _live_nodes(self) -> List[Any]:
        return [
            n for n in self._doc.rootNode().childNodes() if str(n.name()).startswith(LIVE_PREFIX)
        ]

    def live_signature(self, rect: Rect, layers: Sequence[str] = ()) -> int:
        """CRC of the layer stack's state (names, visibility, opacity, blending) and of the
        pixels in rect of the active layer and of ``layers`` (control layers). Strokes land on
        the active layer, so the other layers' pixels are not read every tick."""
        value = 0
        stack = []
        for node, depth in self._walk(self._doc.rootNode(), 0):
            name = str(node.name())
            if name.startswith((LIVE_PREFIX, PREVIEW_PREFIX)) or node.type() == "selectionmask":
                continue
            stack.append(node)
            state = f"{depth}|{name}|{node.visible()}|{node.opacity()}|{node.blendingMode()}"
            value = zlib.crc32(state.encode("utf-8"), value)
        active = self._doc.activeNode()
        if active is None or str(active.name()).startswith((LIVE_PREFIX, PREVIEW_PREFIX)):
            # No artist layer is active: read every visible layer instead.
            watched = [n for n in stack if n.visible() and n.type() != "grouplayer"]
        else:
            watched = [active] + [self._doc.nodeByName(name) for name in layers]
        for node in watched:
            if node is not None:
                data = node.pixelData(rect.x, rect.y, rect.width, rect.height)
                value = zlib.crc32(bytes(data), value)
        return value

    def _walk(self, node: Any, depth: int) -> Iterator[Tuple[Any, int]]:
        for child in node.childNodes():
            yield child, depth
            yield from self._walk(child, depth + 1)

    def read_pixels_without_live(self, rect: Rect) -> bytes:
        """The projection over rect with the live layer hidden for the read (no undo step)."""
        hidden = [n for n in self._live_nodes() if n.visible()]
        for node in hidden:
            node.setVisible(False)
        if hidden:
            self._doc.refreshProjection()
            self._doc.waitForDone()
        try:
            return self._read(self._doc, rect)
        finally:
            for node in hidden:
                node.setVisible(True)
            if hidden:
                self._doc.refreshProjection()

    def show_live(self, layer: NewLayer) -> None:
        """The ``[Live]`` layer: created once (locked), then only its pixels change."""
        nodes = self._live_nodes()
        for extra in nodes[1:]:
            extra.remove()
        if nodes:
            node = nodes[0]
            old = node.bounds()
            r = layer.rect
            moved = (old.x(), old.y(), old.width(), old.height()) != (r.x, r.y, r.width, r.height)
            if moved and not old.isEmpty():
                clear = Rect(old.x(), old.y(), old.width(), old.height())
                blank = bytes(clear.width * clear.height * 4)
                self._set_pixels(node, NewLayer(layer.name, blank, clear))
        else:
            parent, above = self._anchor()
            active = self._doc.activeNode()
            node = self._doc.createNode(layer.name, "paintlayer")
            parent.addChildNode(node, above)
            node.setLocked(True)
            if active is not None:
                self._keep_active(active, node)
        self._set_pixels(node, layer)
        self._doc.refreshProjection()

    def _keep_active(self, active: Any, added: Any) -> None:
        """Krita makes a new layer active, sometimes after the call returns: put the artist's
        layer back now and once more on the next event-loop turn (unless they chose another)."""
        self._doc.setActiveNode(active)
        added_id = added.uniqueId()

        def restore() -> None:
            now = self._doc.activeNode()
            if now is not None and now.uniqueId() == added_id:
                self._doc.setActiveNode(active)

        QTimer.singleShot(0, restore)

    def remove_live(self) -> None:
        nodes = self._live_nodes()
        for node in nodes:
            node.remove()
        if nodes:
            self._doc.refreshProjection()
