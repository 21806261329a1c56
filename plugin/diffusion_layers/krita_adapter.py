"""The only module that imports ``krita``: documents, layers, selection, settings, registration.

Pixels leave and enter as 8-bit sRGB BGRA in every colour model, depth and profile: Krita
converts (``colour_io``); results are written in the document's own colour space.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from . import colour_io, krita_documents, node_tree
from .canvas import NewLayer
from .errors import ControlLayerUnusable, LayerNotAdded, NoDocument
from .geometry import Rect
from .krita_documents import LayerDraft, doc_key
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


def on_document_opened(callback: Callable[[str], None]) -> None:
    """Call ``callback(document key)`` whenever Krita opens or creates a document."""
    Krita.instance().notifier().imageCreated.connect(lambda doc: callback(doc_key(doc)))


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


class _Rendered:
    """A node read as it looks: ``pixelData`` is its projection (a paint layer's own pixels
    with its masks applied, a group's composite, a vector layer's rendering …)."""

    def __init__(self, node: Any) -> None:
        self._node = node

    def pixelData(self, x: int, y: int, w: int, h: int) -> Any:
        return self._node.projectionPixelData(x, y, w, h)

    def __getattr__(self, name: str) -> Any:  # colorModel(), colorDepth() … of the node
        return getattr(self._node, name)

    def colorModel(self) -> str:  # the projection's colour space is the node's
        return str(self._node.colorModel())

    def colorDepth(self) -> str:
        return str(self._node.colorDepth())

    def colorProfile(self) -> str:
        return str(self._node.colorProfile())


class KritaCanvas:
    def documents(self) -> krita_documents.KritaDocuments:  # new documents, layer bounds
        return krita_documents.KritaDocuments(Krita.instance())

    def active_document(self) -> Optional["KritaDocument"]:
        doc = Krita.instance().activeDocument()
        return None if doc is None else KritaDocument(doc)

    def document(self, key: str) -> Optional["KritaDocument"]:
        for doc in Krita.instance().documents():
            if doc_key(doc) == key:
                return KritaDocument(doc)
        return None


class KritaDocument:
    def __init__(self, doc: Any) -> None:
        self._doc = doc
        self._key = doc_key(doc)

    @property
    def key(self) -> str:
        return self._key

    def is_open(self) -> bool:
        return any(doc_key(d) == self._key for d in Krita.instance().documents())

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

    def read_layer(self, ref: str, rect: Rect) -> Optional[bytes]:
        """What the layer renders (its projection: groups, vector, clone, file, fill and filter
        layers too), refreshed first; None when there is no such layer."""
        root = self._doc.rootNode()
        node = node_tree.find(root, ref)
        if node is None:
            return None
        name = str(node.name())
        if node_tree.is_mask(node):
            kind = node_tree.KIND_WORDS.get(str(node.type()), "a mask")
            raise ControlLayerUnusable(
                f"'{name}' is {kind}, not a layer: use the layer it belongs to as the control."
            )
        hidden = node_tree.hidden_by(node, root)
        if hidden is not None:
            where = "" if hidden is node else f" (inside the hidden group '{hidden.name()}')"
            raise ControlLayerUnusable(
                f"Control layer '{name}' is hidden{where}, so it shows nothing: "
                "make it visible, or remove the control."
            )
        if str(node.type()) != "paintlayer":
            self._doc.refreshProjection()
        self._doc.waitForDone()
        return self._read(_Rendered(node), rect)

    def layer_name(self, ref: str) -> Optional[str]:
        node = node_tree.find(self._doc.rootNode(), ref)
        return None if node is None else str(node.name())

    def active_layer_id(self) -> str:
        node = self._doc.activeNode()
        return "" if node is None else node_tree.node_id(node)

    def active_layer_name(self) -> str:
        node = self._doc.activeNode()
        return "" if node is None else str(node.name())

    def active_layer_kind(self) -> str:
        node = self._doc.activeNode()
        return "" if node is None else str(node.type())

    def has_node(self, node_id: str) -> bool:
        return node_tree.contains(self._doc.rootNode(), node_id)

    def _insert(self, layer_name: str, node_type: str = "paintlayer", node: Any = None) -> Any:
        """Create a node and add it above the active node's layer; raise when Krita refuses."""
        parent, above = node_tree.anchor(self._doc.rootNode(), self._doc.activeNode())
        return self._add(parent, above, node or self._doc.createNode(layer_name, node_type))

    def _add(self, parent: Any, above: Any, node: Any) -> Any:
        added = parent.addChildNode(node, above)
        if not added or not self.has_node(node_tree.node_id(node)):
            where = f"above '{above.name()}'" if above is not None else "on top of the image"
            raise LayerNotAdded(
                f"Krita did not add the layer '{node.name()}' {where}. "
                "Select a visible, unlocked paint layer and try again."
            )
        return node

    def _set_pixels(self, node: Any, layer: NewLayer) -> None:  # converted by Krita
        colour_io.write_node(Krita.instance(), node, layer.pixels, layer.rect, self.is_open)

    def _by_id(self, node_id: str) -> Any:
        return node_tree.by_id(self._doc.rootNode(), node_id)

    def idle(self) -> bool:  # no stroke (the artist's, a crop) runs: tryBarrierLock, released
        if not self.is_open():
            raise NoDocument("The document was closed.")
        locked = bool(self._doc.tryBarrierLock())
        return locked and self._doc.unlock() is None

    def draft_layer(self, name: str) -> LayerDraft:
        return LayerDraft(Krita.instance(), self._doc, name, self.is_open)

    def show_preview(self, layer: NewLayer, preview_id: str = "", draft: Any = None) -> str:
        """A new locked preview where the old one was (else above the active node's layer);
        the old one goes, the artist's active layer stays active. ``draft``: pixels already
        written (in strips). Pixels go in before the node joins the tree: Krita renders it in
        the background, and a failed conversion or a closed document leaves nothing behind."""
        if draft is None:
            draft = self.draft_layer(layer.name)
            draft.write(layer.pixels, layer.rect)
        elif not self.is_open():
            raise NoDocument("The document was closed.")
        active, node = self._doc.activeNode(), draft.node
        old = self._by_id(preview_id)
        if old is not None:
            node_tree.replace(self._doc.rootNode(), old, node, self._add)
        else:
            self._insert(layer.name, node=node)
        node.setLocked(True)
        if active is not None and not node_tree.is_temporary(active):
            self._keep_active(active, node)
        return node_tree.node_id(node)

    def remove_preview(self, preview_id: str) -> None:
        node = self._by_id(preview_id)
        if node is not None:
            node.remove()
            self._doc.refreshProjection()

    def keep_preview(self, preview_id: str, name: str) -> bool:
        node = self._by_id(preview_id)
        if node is None:
            return False
        node.setLocked(False)
        node.setName(name)
        self._doc.setActiveNode(node)
        return True

    def add_layer(self, layer: NewLayer) -> str:
        """A paint layer above the active node's layer (one undo step); it becomes active."""
        node = self._insert(layer.name)
        self._set_pixels(node, layer)
        self._doc.setActiveNode(node)
        self._doc.refreshProjection()
        return node_tree.node_id(node)

    def add_group(self, name: str, layers: List[NewLayer], preview_id: str = "") -> List[str]:
        group = self._doc.createGroupLayer(name)
        ids: List[str] = []
        nodes = []
        for layer in layers:
            node = self._doc.createNode(layer.name, "paintlayer")
            group.addChildNode(node, nodes[-1] if nodes else None)
            nodes.append(node)
            ids.append(node_tree.node_id(node))
        preview = self._by_id(preview_id)
        if preview is not None:
            node_tree.replace(self._doc.rootNode(), preview, group, self._add)
        else:
            self._insert(name, node=group)
        for index, node in enumerate(nodes):
            self._set_pixels(node, layers[index])
        self._doc.refreshProjection()
        return ids

    def remove_strays(self, keep: Sequence[str], keep_live: bool = False) -> int:
        strays = node_tree.strays(self._doc.rootNode(), keep, keep_live)
        for node in strays:
            log.info("removing stray layer %s", node.name())
            node.remove()
        if strays:
            self._doc.refreshProjection()
        return len(strays)

    def read_annotation(self, kind: str) -> bytes:
        data = self._doc.annotation(kind)
        return b"" if data is None else bytes(data)

    def write_annotation(self, kind: str, description: str, data: bytes) -> None:
        self._doc.setAnnotation(kind, description, QByteArray(data))
        self._doc.setModified(True)

    def _live_nodes(self) -> List[Any]:
        return node_tree.temporary_nodes(self._doc.rootNode(), LIVE_PREFIX)

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
            root = self._doc.rootNode()
            watched = [active] + [node_tree.find(root, ref) for ref in layers]
        for node in watched:
            if node is not None:
                data = _Rendered(node).pixelData(rect.x, rect.y, rect.width, rect.height)
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
            if not self.is_open():  # waitForDone runs events: the artist may have closed it
                raise NoDocument("The document was closed.")
            return self._read(self._doc, rect)
        finally:
            if hidden and self.is_open():  # never touch a document closed meanwhile
                for node in hidden:
                    node.setVisible(True)
                self._doc.refreshProjection()  # idle again before Krita runs anything else
                self._doc.waitForDone()

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
            active = self._doc.activeNode()
            node = self._insert(layer.name)
            node.setLocked(True)
            if active is not None:
                self._keep_active(active, node)
        self._set_pixels(node, layer)  # refuses a document closed during the conversion
        self._doc.refreshProjection()
        self._doc.waitForDone()

    def _keep_active(self, active: Any, added: Any) -> None:
        """Krita makes a new layer active, sometimes after the call returns: put the artist's
        layer back now and once more on the next event-loop turn (unless they chose another)."""
        self._doc.setActiveNode(active)
        added_id, active_id = added.uniqueId(), node_tree.node_id(active)

        def restore() -> None:  # (a closed document, a removed layer are never touched)
            now = self._doc.activeNode() if self.is_open() else None
            if now is not None and now.uniqueId() == added_id and self.has_node(active_id):
                self._doc.setActiveNode(active)

        QTimer.singleShot(0, restore)

    def remove_live(self) -> None:
        nodes = self._live_nodes()
        for node in nodes:
            node.remove()
        if nodes:
            self._doc.refreshProjection()
