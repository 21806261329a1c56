"""One document's state: its job, its results, its previews and its controls.

Everything here belongs to one open document (``doc_key``, its root node's uniqueId); the
plugin's settings (prompt, steps …) are the artist's and shared by all documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .geometry import Rect
from .job_watch import JobWatch
from .protocol import JobParams
from .results import Result
from .settings import ControlLayer
from .turns import Turns

#: Previews remembered per document so that undo/redo can bring one back (oldest forgotten).
MAX_PREVIEWS = 16


@dataclass
class Shown:
    """What one ``[Preview]`` layer shows: a result and the job that made it."""

    result: Result
    params: JobParams
    region: Rect
    mask: Optional[bytes]


IDLE, GENERATING, PREVIEW, ERROR = "idle", "generating", "preview", "error"


@dataclass
class Session:
    """One document's job and results."""

    doc_key: str
    state: str = IDLE
    last_error: str = ""
    job_id: Optional[str] = None
    watch: Optional[JobWatch] = None
    placing: Optional[Turns] = None  # a large result being written into its preview
    cancel_requested: bool = False
    params: Optional[JobParams] = None
    region: Optional[Rect] = None
    canvas: Optional[Rect] = None  # the document's bounds when the job was planned
    mask: Optional[bytes] = None
    step: int = 0
    total_steps: int = 0
    results: List[Result] = field(default_factory=list)
    selected: int = -1
    preview_fetching: bool = False
    discarded: bool = False  # Discard hid the results (undo can bring the preview back)
    #: Every preview layer this session made, by uniqueId; the one in the document is "the"
    #: preview (undo/redo may remove it or bring an older one back).
    previews: Dict[str, Shown] = field(default_factory=dict)
    controls: List[ControlLayer] = field(default_factory=list)
    controls_loaded: bool = False
    refused: str = ""  # the error is this refusal said before sending (no job was sent)

    def remember(self, preview_id: str, shown: Shown) -> None:
        """``shown`` is what ``preview_id`` shows now; it becomes the newest preview."""
        self.previews.pop(preview_id, None)
        self.previews[preview_id] = shown
        while len(self.previews) > MAX_PREVIEWS:
            self.previews.pop(next(iter(self.previews)))


def clear_refusal(session: Optional[Session], settings: object, values: Dict[str, object]) -> None:
    """Settings are about to take ``values``: if one of them changes (not just set again, as
    widgets do when they refresh), a refusal said before sending goes (its cause may be gone;
    the next Generate says it again if not). A server's error stays until the next job."""
    changed = any(getattr(settings, key, None) != value for key, value in values.items())
    if not changed or session is None:
        return
    if session.state == ERROR and session.last_error == session.refused:
        session.state, session.last_error, session.refused = IDLE, "", ""


__all__ = ["ERROR", "GENERATING", "IDLE", "PREVIEW", "Session", "Shown", "clear_refusal"]
