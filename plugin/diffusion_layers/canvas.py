"""What the core logic needs from a document, as protocols (krita_adapter implements them).

Pixels here are always 8-bit sRGB BGRA (4 bytes/pixel, straight alpha) and masks 8-bit gray;
the adapter has Krita convert every colour model, depth and profile (``colour_io``).
Rectangles are canvas coordinates; reads outside the canvas come back transparent /
unselected (the planner never asks for them: regions lie inside the canvas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence

from .geometry import Rect


@dataclass
class NewLayer:
    name: str
    pixels: bytes  # BGRA8
    rect: Rect


class LayerDraft(Protocol):
    def write(self, bgra: bytes, rect: Rect) -> None:
        """8-bit sRGB BGRA over ``rect`` (canvas px), converted to the document's space."""
        ...


class CanvasDocument(Protocol):
    @property
    def key(self) -> str:
        """Stable identity of the document for as long as it is open."""
        ...

    def is_open(self) -> bool: ...

    def bounds(self) -> Rect: ...

    def check_supported(self) -> None:
        """Raise UnsupportedDocument when the document cannot be read (every colour model,
        depth and profile can: Krita converts; kept for documents a future Krita refuses)."""
        ...

    def selection_bounds(self) -> Optional[Rect]: ...

    def read_pixels(self, rect: Rect) -> bytes:
        """The visible image (projection) over rect, BGRA8."""
        ...

    def read_selection(self, rect: Rect) -> bytes: ...

    def read_layer(self, ref: str, rect: Rect) -> Optional[bytes]:
        """What layer ``ref`` (its uniqueId, else its name) renders over rect, BGRA8: its
        projection, so every layer type works. None when the document has no such layer;
        raises ControlLayerUnusable (a sentence) for a mask or a hidden layer."""
        ...

    def layer_name(self, ref: str) -> Optional[str]:
        """The current name of layer ``ref`` (uniqueId, else name), None once it is gone."""
        ...

    def active_layer_id(self) -> str: ...

    def active_layer_name(self) -> str: ...

    def active_layer_kind(self) -> str:
        """Krita's node type of the active node (``paintlayer``, ``filtermask`` …)."""
        ...

    def has_node(self, node_id: str) -> bool:
        """The node is in the document's layer tree now (not removed, not undone)."""
        ...

    def idle(self) -> bool:
        """No stroke runs on the image now (the artist's, a crop, a filter): a result placed
        now lands on the canvas as it will stay. Raises NoDocument once it was closed."""
        ...

    def draft_layer(self, name: str) -> "LayerDraft":
        """A paint layer outside the layer tree, to write in strips before it is shown."""
        ...

    def show_preview(
        self, layer: NewLayer, preview_id: str, draft: Optional["LayerDraft"] = None
    ) -> str:
        """Show ``layer`` in the locked preview ``preview_id`` (its pixels replaced in place) or,
        when that is not in the document, in a new one above the active node's layer; the
        artist's active layer stays active. Returns the preview's uniqueId. ``draft``: the
        layer's pixels, already written into it, instead of ``layer.pixels``. Raises
        NoDocument when the document was closed (nothing is left behind)."""
        ...

    def remove_preview(self, preview_id: str) -> None: ...

    def keep_preview(self, preview_id: str, name: str) -> bool:
        """Make the shown preview the artist's layer (renamed, unlocked; no undo step of its
        own: undoing the preview's addition removes it). False when it is gone."""
        ...

    def add_layer(self, layer: NewLayer) -> str:
        """Add a paint layer above the active node's layer; returns its uniqueId."""
        ...

    def add_group(self, name: str, layers: List[NewLayer], preview_id: str = "") -> List[str]:
        """A group holding ``layers`` where the preview is (else above the active node's layer);
        the preview goes. Returns the layers' ids."""
        ...

    def remove_strays(self, keep: Sequence[str], keep_live: bool = False) -> int:
        """Remove ``[Preview]``/``[Live]`` layers anywhere in the tree whose uniqueId is not in
        ``keep`` (copies, leftovers saved in a file) — ``[Live]`` ones too unless ``keep_live``
        (live mode runs on this document); returns how many went."""
        ...

    def read_annotation(self, kind: str) -> bytes: ...

    def write_annotation(self, kind: str, description: str, data: bytes) -> None: ...


class Canvas(Protocol):
    def active_document(self) -> Optional[CanvasDocument]: ...

    def document(self, key: str) -> Optional[CanvasDocument]:
        """The open document with that key, or None once it was closed."""
        ...
