"""What the core logic needs from a document, as protocols (krita_adapter implements them).

Pixels here are always 8-bit BGRA (4 bytes/pixel, straight alpha) and masks 8-bit gray; the
adapter converts 16-bit documents. Rectangles are canvas coordinates and may leave the canvas
(outside reads as transparent / unselected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol

from .geometry import Rect


@dataclass
class NewLayer:
    name: str
    pixels: bytes  # BGRA8
    rect: Rect


class CanvasDocument(Protocol):
    @property
    def key(self) -> str:
        """Stable identity of the document for as long as it is open."""
        ...

    def is_open(self) -> bool: ...

    def bounds(self) -> Rect: ...

    def check_supported(self) -> None:
        """Raise UnsupportedDocument naming the colour model/depth when it cannot be sent."""
        ...

    def selection_bounds(self) -> Optional[Rect]: ...

    def read_pixels(self, rect: Rect) -> bytes:
        """The visible image (projection) over rect, BGRA8."""
        ...

    def read_selection(self, rect: Rect) -> bytes: ...

    def read_layer(self, name: str, rect: Rect) -> Optional[bytes]:
        """One layer's pixels over rect (None when no layer has that name)."""
        ...

    def active_layer_id(self) -> str: ...

    def active_layer_name(self) -> str: ...

    def show_preview(self, layer: NewLayer) -> None:
        """Create or replace the locked ``[Preview]`` layer."""
        ...

    def remove_preview(self) -> None: ...

    def add_layer(self, layer: NewLayer) -> str:
        """Add a paint layer above the active one, replacing any preview; returns its uniqueId."""
        ...

    def add_group(self, name: str, layers: List[NewLayer]) -> List[str]:
        """A group above the active layer holding ``layers`` (replaces the preview); their ids."""
        ...

    def read_annotation(self, kind: str) -> bytes: ...

    def write_annotation(self, kind: str, description: str, data: bytes) -> None: ...


class Canvas(Protocol):
    def active_document(self) -> Optional[CanvasDocument]: ...

    def document(self, key: str) -> Optional[CanvasDocument]:
        """The open document with that key, or None once it was closed."""
        ...
