"""A small in-memory stand-in for Krita's ``krita`` module (libkis), for the plugin's tests.

It implements the calls the plugin makes with Krita's observable behaviour as recorded in
/work/shared/notes/krita-facts.md: BGRA pixel data (8 bytes/pixel for U16), ``doc.selection()``
is None without a selection, ``addChildNode``/``remove`` on an attached node are one undo step
each (``Document.undo_steps``; ``Document.undo()``/``redo()`` revert and replay them as
Edit ▸ Undo/Redo do), annotations are stored per type. Layers as in Krita 5.1.5: a group has
no pixels of its own (``pixelData`` is empty) but a ``projectionPixelData``; vector, fill,
file, clone and filter layers render (here: their ``pixels``) without own pixels; masks go on
layers only and a paint layer refuses a child layer (``addChildNode`` returns False); adding
a node makes it active; ``Krita.notifier().imageCreated`` fires for new documents. Helpers
for tests are ``Krita.reset()``, ``Krita.close_document(doc)``, ``Krita.set_active(doc)`` and
``FakeWindow``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from colour_model import Space, convert, from_bgra8, to_bgra8
from qt_binding import (  # the plugin's binding, PyQt5 or PyQt6 (Krita re-exports QLabel & co.)
    QAction,
    QByteArray,
    QDockWidget,
    QImage,
    QLabel,  # noqa: F401  (the real `krita` module re-exports it; startup.py uses it)
    QObject,
    QPainter,
    QRect,
    Qt,  # noqa: F401  (re-exported like QLabel)
    QtCore,
    QUuid,
)


def _copy_rect(src: bytes, sw: int, sh: int, bpp: int, x: int, y: int, w: int, h: int) -> bytes:
    """Read rect (x, y, w, h) out of a sw x sh buffer; outside reads as zeros."""
    out = bytearray(w * h * bpp)
    for row in range(h):
        sy = y + row
        if not 0 <= sy < sh:
            continue
        x0, x1 = max(x, 0), min(x + w, sw)
        if x0 >= x1:
            continue
        out[(row * w + x0 - x) * bpp : (row * w + x1 - x) * bpp] = src[
            (sy * sw + x0) * bpp : (sy * sw + x1) * bpp
        ]
    return bytes(out)


def _paste_rect(
    dst: bytearray, dw: int, dh: int, bpp: int, data: bytes, x: int, y: int, w: int, h: int
) -> None:
    for row in range(h):
        dy = y + row
        if not 0 <= dy < dh:
            continue
        x0, x1 = max(x, 0), min(x + w, dw)
        if x0 >= x1:
            continue
        dst[(dy * dw + x0) * bpp : (dy * dw + x1) * bpp] = data[
            (row * w + x0 - x) * bpp : (row * w + x1 - x) * bpp
        ]


class Selection:
    def __init__(self, parent: Any = None) -> None:
        self._rect = (0, 0, 0, 0)
        self._data = b""

    def setPixelData(self, value: Any, x: int, y: int, w: int, h: int) -> None:
        self._rect, self._data = (x, y, w, h), bytes(value)

    def _bounds(self) -> tuple[int, int, int, int]:
        x, y, w, h = self._rect
        xs = [i % w for i, v in enumerate(self._data) if v]
        ys = [i // w for i, v in enumerate(self._data) if v]
        if not xs:
            return (0, 0, 0, 0)
        return (x + min(xs), y + min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def x(self) -> int:
        return self._bounds()[0]

    def y(self) -> int:
        return self._bounds()[1]

    def width(self) -> int:
        return self._bounds()[2]

    def height(self) -> int:
        return self._bounds()[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        sx, sy, sw, sh = self._rect
        return QByteArray(_copy_rect(self._data, sw, sh, 1, x - sx, y - sy, w, h))


class Node(QObject):
    def __init__(self, doc: Document, name: str, node_type: str) -> None:
        super().__init__()
        self._doc, self._name, self._type = doc, name, node_type
        self._uuid = QUuid.createUuid()
        self._parent: Node | None = None
        self._children: list[Node] = []
        self._locked = False
        self._visible = True
        self.space: Space = doc.space  # a new node is in the document's colour space
        self.pixels = bytearray(doc.width() * doc.height() * doc.space.bpp)

    def name(self) -> str:
        return self._name

    def setName(self, name: str) -> None:
        self._name = name

    def type(self) -> str:
        return self._type

    def uniqueId(self) -> QUuid:
        return self._uuid

    def parentNode(self) -> Node | None:
        return self._parent

    def childNodes(self) -> list[Node]:
        return list(self._children)

    def locked(self) -> bool:
        return self._locked

    def setLocked(self, value: bool) -> None:
        self._locked = value

    def visible(self) -> bool:
        return self._visible

    def setVisible(self, value: bool) -> None:
        self._visible = value

    def opacity(self) -> int:
        return 255

    def blendingMode(self) -> str:
        return "normal"

    def bounds(self) -> QRect:
        """Extent of the non-transparent pixels (Krita: exact bounds of the paint device)."""
        d = self._doc
        bpp = self.space.bpp
        alpha = bytes(self.pixels)[bpp - 1 :: bpp]
        rows = [
            y
            for y in range(d.height())
            if alpha[y * d.width() : (y + 1) * d.width()].strip(b"\x00")
        ]
        if not rows:
            return QRect()
        cols = [
            x
            for x in range(d.width())
            if any(alpha[y * d.width() + x] for y in range(rows[0], rows[-1] + 1))
        ]
        return QRect(cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)

    def attached(self) -> bool:
        node: Node | None = self
        while node is not None:
            if node is self._doc._root:
                return True
            node = node._parent
        return False

    def addChildNode(self, child: Node, above: Node | None) -> bool:
        # Children are ordered bottom to top; above=None puts the child on top (libkis uses
        # childCount() as the index then). Only groups take layers (masks go on any layer):
        # Krita refuses a paint layer inside a paint layer (returns False, adds nothing).
        if self._type != "grouplayer" and not child._type.endswith("mask"):
            return False
        index = self._children.index(above) + 1 if above in self._children else len(self._children)
        self._children.insert(index, child)
        child._parent = self
        if self.attached():
            self._doc.undo_steps.append(("add", child.name()))
            self._doc.history.append(("add", child, self, index))
            self._doc.redo_stack.clear()
            self._doc._active = child  # Krita activates the node it just added
        return True

    def remove(self) -> bool:
        if self._parent is None:
            return False
        was_attached = self.attached()
        parent, index = self._parent, self._parent._children.index(self)
        self._parent._children.remove(self)
        self._parent = None
        if was_attached:
            self._doc.undo_steps.append(("remove", self._name))
            self._doc.history.append(("remove", self, parent, index))
            self._doc.redo_stack.clear()
        return True

    def pixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        """A layer's own pixels: groups and masks have none (0 bytes), vector, fill, file,
        clone and filter layers none of their own (transparent); see projectionPixelData."""
        d, bpp = self._doc, self.space.bpp
        if self._type == "grouplayer" or self._type.endswith("mask"):
            return QByteArray()
        if self._type != "paintlayer":
            return QByteArray(bytes(w * h * bpp))
        return QByteArray(_copy_rect(bytes(self.pixels), d.width(), d.height(), bpp, x, y, w, h))

    def projectionPixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        """What the node renders: a group its visible children composited, any other layer
        its pixels (here ``pixels`` stands for a vector/fill/file/clone layer's rendering)."""
        d, bpp = self._doc, self.space.bpp
        if self._type == "grouplayer":
            return QByteArray(_copy_rect(d.composite(self), d.width(), d.height(), bpp, x, y, w, h))
        return QByteArray(_copy_rect(bytes(self.pixels), d.width(), d.height(), bpp, x, y, w, h))

    def setPixelData(self, value: Any, x: int, y: int, w: int, h: int) -> bool:
        d, bpp = self._doc, self.space.bpp
        data = bytes(value)
        if len(data) != w * h * bpp:
            raise ValueError(f"setPixelData: {len(data)} bytes for {w}x{h} at {bpp} bytes/pixel")
        _paste_rect(self.pixels, d.width(), d.height(), bpp, data, x, y, w, h)
        return True

    def colorModel(self) -> str:
        return self.space.model

    def colorDepth(self) -> str:
        return self.space.depth

    def colorProfile(self) -> str:
        return self.space.profile

    def setColorSpace(self, model: str, depth: str, profile: str) -> bool:
        """Converts the pixels (Krita: a 'Convert Layer Color Space' undo step in the node's
        document, recorded even for a node outside the tree)."""
        if self._type != "paintlayer":  # the fake converts paint layers only
            return False
        target = Space.make(model, depth, profile)
        self.pixels = bytearray(convert(self.space, target, bytes(self.pixels)))
        self.space = target
        self._doc.undo_steps.append(("convert", self._name))
        return True


class Document(QObject):
    def __init__(
        self, width: int, height: int, name: str, model: str, depth: str, profile: str = ""
    ) -> None:
        super().__init__()
        self._w, self._h, self._name, self._model, self._depth = width, height, name, model, depth
        self.space = Space.make(model, depth, profile)
        self.bpp = self.space.bpp
        self._opened_over: Document | None = None  # the active document when this one was made
        self._root = Node(self, "root", "grouplayer")
        self._selection: Selection | None = None
        self._active: Node | None = None
        self.busy = False  # a stroke runs (tests): tryBarrierLock fails
        self.barrier_locked = False
        self._annotations: dict[str, tuple[str, bytes]] = {}
        self.undo_steps: list[tuple[str, str]] = []
        # Krita's undo stack for layer additions/removals: (what, node, parent, index).
        self.history: list[tuple[str, Node, Node, int]] = []
        self.redo_stack: list[tuple[str, Node, Node, int]] = []
        self.modified = False
        background = Node(self, "Background", "paintlayer")
        self._root._children.append(background)
        background._parent = self._root
        self._active = background

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def name(self) -> str:
        return self._name

    def fileName(self) -> str:
        return ""

    def resolution(self) -> int:  # pixels per inch (Krita rounds to an int)
        return int(getattr(self, "_res", 72.0))

    def colorModel(self) -> str:
        return self._model

    def colorDepth(self) -> str:
        return self._depth

    def colorProfile(self) -> str:
        return self.space.profile

    def rootNode(self) -> Node:
        return self._root

    def activeNode(self) -> Node | None:
        return self._active if self._active is not None and self._active.attached() else None

    def tryBarrierLock(self) -> bool:
        """False while a stroke runs (tests set ``busy``); True locks until ``unlock()``."""
        if self.busy or self.barrier_locked:
            return False
        self.barrier_locked = True
        return True

    def unlock(self) -> None:
        self.barrier_locked = False

    def setActiveNode(self, node: Node) -> None:
        if not node.attached():  # Krita: SAFE ASSERT "shape" (kis_node_manager.cpp), ignored
            Krita.instance().safe_asserts.append(f"setActiveNode({node.name()!r}): not in the tree")
            return
        self._active = node

    def createNode(self, name: str, node_type: str) -> Node:
        return Node(self, name, node_type)

    def createGroupLayer(self, name: str) -> Node:
        return Node(self, name, "grouplayer")

    def all_nodes(self) -> list[Node]:
        out: list[Node] = []

        def walk(node: Node) -> None:
            for child in node._children:
                out.append(child)
                walk(child)

        walk(self._root)
        return out

    def nodeByName(self, name: str) -> Node | None:
        return next((n for n in self.all_nodes() if n.name() == name), None)

    def selection(self) -> Selection | None:
        return self._selection

    def setSelection(self, selection: Selection | None) -> None:
        self._selection = selection

    def crop(self, x: int, y: int, w: int, h: int) -> None:
        """Image ▸ Crop (and Resize Canvas): the new w x h canvas starts at (x, y) of the old
        one; every layer keeps its pixels' place, the origin stays (0, 0), the selection goes."""
        old_w, old_h = self._w, self._h
        self._reshape(
            w, h, lambda n: _copy_rect(bytes(n.pixels), old_w, old_h, n.space.bpp, x, y, w, h)
        )

    def resizeImage(self, x: int, y: int, w: int, h: int) -> None:
        self.crop(x, y, w, h)

    def scaleImage(self, w: int, h: int, xres: int, yres: int, strategy: str) -> bool:
        """Image ▸ Scale Image (nearest neighbour here)."""

        def scaled(node: Node) -> bytes:
            bpp, src, out = node.space.bpp, bytes(node.pixels), bytearray()
            for row in range(h):
                for col in range(w):
                    at = ((row * self._h // h) * self._w + col * self._w // w) * bpp
                    out += src[at : at + bpp]
            return bytes(out)

        self._reshape(w, h, scaled)
        return True

    def _reshape(self, w: int, h: int, pixels: Callable[[Node], bytes]) -> None:
        for node in [self._root, *self.all_nodes()]:
            node.pixels = bytearray(pixels(node))
        self._w, self._h, self._selection = w, h, None

    def pixelData(self, x: int, y: int, w: int, h: int) -> QByteArray:
        """The projection in the document's colour space: visible layers composited."""
        full = self.composite(self._root)
        return QByteArray(_copy_rect(full, self._w, self._h, self.bpp, x, y, w, h))

    def projection(self, x: int, y: int, w: int, h: int) -> QImage:
        """The projection as an 8-bit sRGB ARGB32 QImage, whatever the colour space (Krita
        5.1.5: parts outside the canvas read as opaque white)."""
        full = self.composite_bgra8(self._root)
        data = bytearray(_copy_rect(full, self._w, self._h, 4, x, y, w, h))
        for row in range(h):
            for col in range(w):
                if not (0 <= x + col < self._w and 0 <= y + row < self._h):
                    data[(row * w + col) * 4 : (row * w + col) * 4 + 4] = b"\xff\xff\xff\xff"
        return QImage(bytes(data), w, h, w * 4, QImage.Format.Format_ARGB32).copy()

    def composite(self, group: Node) -> bytes:
        """The visible layers below ``group`` in the document's colour space, whole canvas."""
        return from_bgra8(self.space, self.composite_bgra8(group))

    def composite_bgra8(self, group: Node) -> bytes:
        """The visible layers below ``group`` (masks not modelled) as 8-bit sRGB BGRA: each
        layer converted from its own colour space, then composited source-over."""
        fmt = QImage.Format.Format_ARGB32
        image = QImage(self._w, self._h, fmt)
        image.fill(0)
        painter = QPainter(image)

        def paint(node: Node) -> None:
            for child in node._children:
                if not child.visible() or child.type().endswith("mask"):
                    continue
                if child.type() != "grouplayer":
                    data = to_bgra8(child.space, bytes(child.pixels))
                    layer = QImage(data, self._w, self._h, self._w * 4, fmt)
                    painter.drawImage(0, 0, layer)
                paint(child)

        paint(group)
        painter.end()
        ptr = image.constBits()
        return ptr.asstring(image.sizeInBytes())  # type: ignore[union-attr]

    def undo(self) -> bool:
        """Test helper, Krita's edit_undo for layer steps: reverts the last add/remove."""
        if not self.history:
            return False
        step = self.history.pop()
        self._revert(step, undo=True)
        self.redo_stack.append(step)
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        step = self.redo_stack.pop()
        self._revert(step, undo=False)
        self.history.append(step)
        return True

    def _revert(self, step: tuple[str, Node, Node, int], undo: bool) -> None:
        what, node, parent, index = step
        if (what == "add") == undo:  # take the node out again
            if node._parent is not None:
                node._parent._children.remove(node)
                node._parent = None
        else:
            parent._children.insert(min(index, len(parent._children)), node)
            node._parent = parent

    def refreshProjection(self) -> None:
        pass

    def waitForDone(self) -> None:
        pass

    def annotation(self, kind: str) -> QByteArray:
        return QByteArray(self._annotations.get(kind, ("", b""))[1])

    def annotationTypes(self) -> list[str]:
        return list(self._annotations)

    def setAnnotation(self, kind: str, description: str, data: Any) -> None:
        self._annotations[kind] = (description, bytes(data))

    def setModified(self, value: bool) -> None:
        self.modified = value

    def close(self) -> bool:
        Krita.instance().close_document(self)
        return True


class Extension(QObject):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:
        pass


class DockWidget(QDockWidget):
    def __init__(self) -> None:
        super().__init__()

    def canvasChanged(self, canvas: Any) -> None:
        pass


class DockWidgetFactoryBase:
    class DockPosition(enum.Enum):
        """Scoped only, as in Krita 6's PyQt6 build (Krita 5.1.5 accepts this form too)."""

        DockRight = 1
        DockLeft = 2


class DockWidgetFactory(DockWidgetFactoryBase):
    def __init__(self, id: str, position: int, klass: type) -> None:  # noqa: A002
        self.id, self.position, self.klass = id, position, klass


class FakeWindow(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.views: list[Document] = []  # documents given a view (addView)

    def addView(self, doc: Document) -> None:
        self.views.append(doc)
        Krita.instance().set_active(doc)

    def createAction(self, id: str, text: str = "", menu: str = "") -> QAction:  # noqa: A002
        action = QAction(text, self)
        action.setObjectName(id)
        Krita.instance().actions[id] = action
        return action


class Notifier(QObject):
    imageCreated = QtCore.pyqtSignal(object)  # Document


class Krita(QObject):
    _instance: Krita | None = None

    def __init__(self) -> None:
        super().__init__()
        self._documents: list[Document] = []
        self._active: Document | None = None
        self.settings: dict[tuple[str, str], str] = {}
        self._extensions: list[Extension] = []
        self.dock_factories: list[DockWidgetFactory] = []
        self.actions: dict[str, QAction] = {}
        self._notifier = Notifier()
        #: Calls real Krita answers with a SAFE ASSERT (the fake_krita fixture fails on any).
        self.safe_asserts: list[str] = []

    def notifier(self) -> Notifier:
        return self._notifier

    def activeWindow(self) -> FakeWindow:
        if getattr(self, "_window", None) is None:
            self._window = FakeWindow()
        return self._window

    #: What ``version()`` reports (a test may set an old one to see the plugin refuse it).
    VERSION = "5.1.5"

    def version(self) -> str:
        return Krita.VERSION

    @staticmethod
    def instance() -> Krita:
        if Krita._instance is None:
            Krita._instance = Krita()
        return Krita._instance

    @staticmethod
    def reset() -> Krita:
        """Tests: forget documents and settings, keep registered extensions and factories."""
        old = Krita.instance()
        new = Krita()
        new._extensions, new.dock_factories, new.actions = (
            old._extensions,
            old.dock_factories,
            old.actions,
        )
        Krita._instance = new
        return new

    def activeDocument(self) -> Document | None:
        return self._active

    def documents(self) -> list[Document]:
        return list(self._documents)

    def createDocument(
        self,
        w: int,
        h: int,
        name: str,
        model: str,
        depth: str,
        profile: str = "",
        res: float = 72.0,
    ) -> Document:
        doc = Document(w, h, name, model, depth, profile)
        doc._res = res
        doc._opened_over = self._active
        self._documents.append(doc)
        self._active = doc
        self._notifier.imageCreated.emit(doc)
        return doc

    def set_active(self, doc: Document | None) -> None:
        self._active = doc

    def close_document(self, doc: Document) -> None:
        self._documents.remove(doc)
        if self._active is doc:  # back to the one that was active before (if still open)
            back = doc._opened_over
            self._active = back if back in self._documents else None
            if self._active is None and self._documents:
                self._active = self._documents[-1]

    def readSetting(self, group: str, name: str, default: str) -> str:
        return self.settings.get((group, name), default)

    def writeSetting(self, group: str, name: str, value: str) -> None:
        self.settings[(group, name)] = value

    def addExtension(self, extension: Extension) -> None:
        self._extensions.append(extension)

    def extensions(self) -> list[Extension]:
        return list(self._extensions)

    def addDockWidgetFactory(self, factory: DockWidgetFactory) -> None:
        self.dock_factories.append(factory)

    def action(self, name: str) -> QAction | None:
        return self.actions.get(name)
