"""One document's generation state: its job, its results and what the preview shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from .geometry import Rect
from .job_watch import JobWatch
from .protocol import JobParams
from .results import Result

IDLE, GENERATING, PREVIEW, ERROR = "idle", "generating", "preview", "error"


@dataclass
class Session:
    """One document's job and results."""

    doc_key: str
    state: str = IDLE
    last_error: str = ""
    job_id: Optional[str] = None
    watch: Optional[JobWatch] = None
    cancel_requested: bool = False
    params: Optional[JobParams] = None
    region: Optional[Rect] = None
    mask: Optional[bytes] = None
    step: int = 0
    total_steps: int = 0
    results: List[Result] = field(default_factory=list)
    selected: int = -1
    preview_fetching: bool = False


__all__ = ["ERROR", "GENERATING", "IDLE", "PREVIEW", "Session"]
