"""What the job queue keeps of each job: its state, progress, error and results.

A ``Job`` moves queued -> running -> done | failed | cancelled (``FINISHED_STATES`` end it);
each carries its EventLog (SSE reads it) and CancelToken (the engine checks it every step).
A ``JobResult`` is one written layer: its file on disk and its raw BGRA bytes in memory.
The queue and its worker (``backend.jobs``) make and change them; a cluster's ingress mirrors
them from its shared registry (``backend.cluster.cluster_queue``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.engine.types import CancelToken, GenerationRequest
from backend.events import EventLog
from backend.protocol import ErrorInfo

FINISHED_STATES = ("done", "failed", "cancelled")


@dataclass
class JobResult:
    index: int
    seed: int
    x: int
    y: int
    width: int
    height: int
    raw: bytes | memoryview  # BGRA8, width*height*4 (a view: sent as it is, no copy)
    path: Path
    # mode "layers": stacking position (0 = bottom) and the job's composite error (0..255)
    layer_index: int | None = None
    composite_error: float | None = None


@dataclass(eq=False)  # jobs compare by identity (the fair queue finds them by it)
class Job:
    id: str
    request: GenerationRequest | None
    mode: str
    summary: str
    client: str = ""  # who submitted it (token name or address): the fair queue's key
    state: str = "queued"
    step: int = 0
    total_steps: int = 0
    error: ErrorInfo | None = None
    results: list[JobResult] = field(default_factory=list)
    preview_png: bytes | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    events: EventLog = field(default_factory=EventLog)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES
