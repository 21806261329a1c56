"""A document's lossless history: every result the plugin received for it, kept in the .kra.

Document annotations (saved with the .kra, like ``doc_controls``):

* ``diffusion_layers_history``: JSON ``{"version", "dropped", "note", "entries": [...]}``, oldest
  entry first; each entry has its canvas rectangle, seed, prompt, style, the full JobParams, a
  small PNG thumbnail (base64) and the slot holding its picture.
* ``diffusion_layers_history_<slot>``: one entry's picture, a lossless PNG (8-bit BGRA exactly
  as the result layer had them). A new result takes the lowest free slot; a dropped entry's
  slot is emptied (Krita 5.1's scripting can remove annotations, but the adapter need not:
  an empty slot costs nothing and is reused).

One annotation per picture keeps recording a job's results proportional to *those* results: a
single annotation holding every picture cost ~1 s per job with a 45 MB history here (copies of
the whole blob on every write, measured in Krita 5.1.5 and with the fake).

The pictures are bounded by a size the artist sets (``PluginSettings.history_limit_mb``); when a
new result does not fit, the oldest go first and ``note`` says so (the docker shows it).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from .canvas import CanvasDocument
from .errors import PluginError
from .geometry import Rect
from .pixels import bgra_to_qimage, decode_image, encode_png, qimage_to_bgra
from .protocol import JobParams, ProtocolError
from .qt import Qt

log = logging.getLogger(__name__)

INDEX_TYPE = "diffusion_layers_history"
INDEX_DESCRIPTION = "Diffusion Layers history of results (index)"
PICTURE_PREFIX = "diffusion_layers_history_"
PICTURE_DESCRIPTION = "Diffusion Layers history: one result (lossless PNG)"
THUMB_SIDE = 96
VERSION = 2
MB = 1024 * 1024


class HistoryUnreadable(PluginError):
    """A history entry's picture cannot be read back (the annotation was damaged)."""


@dataclass
class Entry:
    id: str
    created: float
    x: int
    y: int
    width: int
    height: int
    seed: int
    prompt: str
    style: Optional[str]
    params: Dict[str, Any]  # JobParams.to_dict() of the job
    thumbnail: str  # base64 PNG, at most THUMB_SIDE px
    slot: int  # the picture is annotation PICTURE_PREFIX + str(slot)
    length: int  # bytes of its PNG

    @property
    def picture_type(self) -> str:
        return f"{PICTURE_PREFIX}{self.slot}"

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.width, self.height)

    def job_params(self) -> Optional[JobParams]:
        try:
            return JobParams.from_dict(self.params)
        except ProtocolError as exc:
            log.warning("history entry %s has unreadable parameters: %s", self.id, exc)
            return None


@dataclass
class History:
    entries: List[Entry] = field(default_factory=list)  # oldest first
    dropped: int = 0  # results dropped so far to stay under the limit
    note: str = ""  # how many were dropped in all, as a sentence

    def newest_first(self) -> List[Entry]:
        return list(reversed(self.entries))

    def find(self, entry_id: str) -> Optional[Entry]:
        return next((e for e in self.entries if e.id == entry_id), None)


def load(doc: CanvasDocument) -> History:
    """The document's history index (pictures stay in their annotation until asked for)."""
    raw = doc.read_annotation(INDEX_TYPE)
    if not raw:
        return History()
    try:
        data = json.loads(raw.decode("utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"history version {data.get('version')!r}")
        entries = [Entry(**item) for item in data["entries"]]
        return History(entries, int(data.get("dropped", 0)), str(data.get("note", "")))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("history annotation unreadable (%s); starting a new history", exc)
        return History()


def _save(doc: CanvasDocument, history: History) -> None:
    index = {
        "version": VERSION,
        "dropped": history.dropped,
        "note": history.note,
        "entries": [asdict(e) for e in history.entries],
    }
    text = json.dumps(index, separators=(",", ":"))
    doc.write_annotation(INDEX_TYPE, INDEX_DESCRIPTION, text.encode("utf-8"))


def thumbnail_png(pixels: bytes, width: int, height: int) -> bytes:
    image = bgra_to_qimage(pixels, width, height)
    if max(width, height) > THUMB_SIDE:
        image = image.scaled(
            THUMB_SIDE,
            THUMB_SIDE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return encode_png(image)


@dataclass
class NewEntry:
    """One result to keep: the layer's pixels exactly, where they lie, and the job."""

    pixels: bytes  # BGRA8, rect.width x rect.height
    rect: Rect
    seed: int
    params: JobParams


@dataclass
class Encoded:
    """One result ready to be written: its PNG and thumbnail made (``encode``, any thread)."""

    rect: Rect
    seed: int
    prompt: str
    style: Optional[str]
    params: Dict[str, Any]
    png: bytes
    thumbnail: bytes


def encode(items: List[NewEntry]) -> List[Encoded]:
    """The costly half of recording (PNG, thumbnail, ~0.5 s for 1024 x 1024): touches no
    document, so the plugin runs it off Krita's UI thread (``history_recorder``)."""
    return [
        Encoded(
            item.rect,
            item.seed,
            item.params.prompt,
            item.params.style,
            item.params.to_dict(),
            encode_png(bgra_to_qimage(item.pixels, item.rect.width, item.rect.height)),
            thumbnail_png(item.pixels, item.rect.width, item.rect.height),
        )
        for item in items
    ]


def record(doc: CanvasDocument, items: List[NewEntry], limit_mb: int) -> History:
    """Append ``items`` to the document's history (both halves on this thread)."""
    return commit(doc, encode(items), limit_mb)


def commit(doc: CanvasDocument, items: List[Encoded], limit_mb: int) -> History:
    """Write encoded results into the document's history (the UI thread's half: slots are
    chosen from the index as it is now), dropping the oldest entries (and saying so in
    ``note``) while the pictures exceed ``limit_mb``. Returns the new history."""
    history = load(doc)
    used = {e.slot for e in history.entries}
    for item in items:
        slot = next(n for n in range(len(used) + 1) if n not in used)
        used.add(slot)
        entry = Entry(
            id=uuid.uuid4().hex[:12],
            created=time.time(),
            x=item.rect.x,
            y=item.rect.y,
            width=item.rect.width,
            height=item.rect.height,
            seed=item.seed,
            prompt=item.prompt,
            style=item.style,
            params=item.params,
            thumbnail=base64.b64encode(item.thumbnail).decode("ascii"),
            slot=slot,
            length=len(item.png),
        )
        doc.write_annotation(entry.picture_type, PICTURE_DESCRIPTION, item.png)
        history.entries.append(entry)
    pruned = _prune(doc, history, limit_mb * MB)
    if pruned:
        history.dropped += pruned
        history.note = (
            f"The history keeps {limit_mb} MB of results in this document: {history.dropped} "
            f"older {'result has' if history.dropped == 1 else 'results have'} been dropped so "
            "far, oldest first. Raise the limit under History to keep more (the server's output "
            "folder keeps every result)."
        )
    _save(doc, history)
    return history


def _prune(doc: CanvasDocument, history: History, limit: int) -> int:
    """Drop the oldest entries until the pictures fit ``limit`` bytes (their slots emptied)."""
    pruned, total = 0, sum(e.length for e in history.entries)
    while history.entries and total > limit:
        oldest = history.entries.pop(0)
        doc.write_annotation(oldest.picture_type, PICTURE_DESCRIPTION, b"")
        total -= oldest.length
        pruned += 1
    return pruned


def size(history: History) -> int:
    """Bytes of the pictures kept (what the limit bounds)."""
    return sum(e.length for e in history.entries)


def clear_note(doc: CanvasDocument) -> None:
    """The artist read the pruning note: it is not shown again."""
    history = load(doc)
    if history.note:
        history.note = ""
        _save(doc, history)


def pixels_of(doc: CanvasDocument, entry: Entry) -> bytes:
    """The entry's picture as BGRA8, byte for byte what its result layer had."""
    png = doc.read_annotation(entry.picture_type)
    try:
        if len(png) != entry.length:
            raise ValueError(f"{len(png)} of {entry.length} bytes present")
        image = decode_image(png)
        if (image.width(), image.height()) != (entry.width, entry.height):
            raise ValueError(f"picture is {image.width()}x{image.height()}")
        return qimage_to_bgra(image)
    except ValueError as exc:
        log.warning("history entry %s unreadable: %s", entry.id, exc)
        raise HistoryUnreadable(
            "This history entry's picture cannot be read back from the document (damaged?); "
            "the server's output folder still has the result."
        ) from exc
