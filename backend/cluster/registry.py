"""The cluster's job registry: every job's state, events and results, plus the fair dispatcher.

One named, detached Ray actor holds it (``REGISTRY_NAME`` in ``NAMESPACE``), so every ingress
replica sees the same jobs and an ingress that restarts still knows every job. It also owns the
queue: jobs wait in a ``FairQueue`` (round-robin between clients) and the dispatcher hands the
next one to the generation deployment only when a replica is free (``capacity`` jobs in flight),
so Ray's own per-replica FIFO never decides the order between artists. The generation call
carries the job's model key as Ray Serve's multiplexed model id: ``router.CheckpointRouter``
sends it to the replica holding those weights when it is free, else to a free replica that
loads them.

A generation replica that dies mid-job (its call fails with a Ray actor error) gets the job
retried once from the start on another replica (``MAX_ATTEMPTS``): nothing of it was reported
done, the seed is fixed so the retry gives the same pixels, and a second loss fails the job with
``worker_lost`` (so a job that itself crashes replicas cannot take the whole pool down).

``JobBook`` is the plain-Python state (tested without Ray); ``RegistryActor`` wraps it with the
asyncio parts (waiting for events, the dispatch loop).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from backend.fair_queue import FairQueue

log = logging.getLogger(__name__)

NAMESPACE = "diffusion-layers"
REGISTRY_NAME = "job-registry"
APP_NAME = "diffusion-layers"
GENERATOR_NAME = "Generator"
MAX_ATTEMPTS = 2  # the first run and one retry after a lost replica
FINISHED = ("done", "failed", "cancelled")


class RegistryError(Exception):
    code = "queue_full"


class QueueFullError(RegistryError):
    code = "queue_full"


@dataclass
class Record:
    id: str
    client: str
    mode: str
    summary: str
    model_key: str
    request: Any = None  # the GenerationRequest until it has run
    state: str = "queued"
    step: int = 0
    total_steps: int = 0
    error: dict | None = None
    results: list[dict] = field(default_factory=list)  # ResultInfo fields + "path"
    raws: list[bytes] = field(default_factory=list)
    preview_png: bytes | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    events: list[tuple[int, str, dict]] = field(default_factory=list)
    seq: int = 0
    cancelled: bool = False
    attempts: int = 0
    replica: str | None = None  # the replica that ran it (last attempt)

    def publish(self, name: str, data: dict) -> None:
        self.seq += 1
        event = (self.seq, name, data)
        if name == "progress" and self.events and self.events[-1][1] == "progress":
            self.events[-1] = event  # keep the history short, like backend.events.EventLog
        else:
            self.events.append(event)

    def snapshot(self, after: int | None = None) -> dict:
        """Everything but the request and raw pixels; events after ``after`` (all if None)."""
        events = [e for e in self.events if after is None or e[0] > after]
        return {
            "id": self.id,
            "client": self.client,
            "mode": self.mode,
            "summary": self.summary,
            "state": self.state,
            "step": self.step,
            "total_steps": self.total_steps,
            "error": self.error,
            "results": list(self.results),
            "preview": self.preview_png,  # a small PNG: one round trip answers a GET
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "events": events,
            "replica": self.replica,
            "attempts": self.attempts,
        }


class JobBook:
    """Jobs by id, the fair queue and the bookkeeping of every state change."""

    def __init__(
        self,
        max_queue: int = 64,
        max_queued_per_client: int = 0,
        job_ttl_s: float = 3600.0,
        max_jobs_kept: int = 64,
    ) -> None:
        self.max_queue = max_queue
        self.max_queued_per_client = max_queued_per_client
        self.job_ttl_s = job_ttl_s
        self.max_jobs_kept = max_jobs_kept
        self.jobs: dict[str, Record] = {}
        self.queue: FairQueue[str] = FairQueue()
        self.running: set[str] = set()

    def submit(self, request: Any, client: str, summary: str, model_key: str) -> dict:
        if len(self.queue) >= self.max_queue:
            raise QueueFullError(f"the queue is full ({self.max_queue} jobs); try again later")
        limit = self.max_queued_per_client
        if limit and self.queue.count(client) >= limit:
            raise QueueFullError(
                f"you already have {limit} jobs queued (the per-artist limit); "
                "wait for some to finish or cancel some"
            )
        self.expire(time.time())
        record = Record(
            id=secrets.token_hex(8),
            client=client,
            mode=request.mode,
            summary=summary,
            model_key=model_key,
            request=request,
        )
        self.jobs[record.id] = record
        self.queue.append(client, record.id)
        record.publish("queued", {"id": record.id, "state": "queued"})
        return {"id": record.id, "position": self.position(record.id)}

    def position(self, job_id: str) -> int | None:
        record = self.jobs.get(job_id)
        if record is None or record.state != "queued" or job_id not in self.queue:
            return None
        return self.queue.index(job_id) + len(self.running)

    def next(self) -> Record | None:
        """Take the next queued job in fair order and mark it running."""
        while self.queue:
            record = self.jobs.get(self.queue.popleft())
            if record is None or record.state != "queued":
                continue
            record.state = "running"
            record.attempts += 1
            record.started_at = record.started_at or time.time()
            record.total_steps = record.request.steps * record.request.batch
            self.running.add(record.id)
            record.publish("started", {"id": record.id, "state": "running"})
            return record
        return None

    def progress(
        self, job_id: str, step: int, total: int, preview: bytes | None, replica: str = ""
    ) -> bool:
        """Record one step; returns True when the job should stop (cancelled or gone)."""
        record = self.jobs.get(job_id)
        if record is None or record.state != "running":
            return True
        record.replica = replica or record.replica
        record.step, record.total_steps = int(step), int(total)
        if preview is not None:
            record.preview_png = preview
        url = f"/v1/jobs/{job_id}/preview.png" if preview is not None else None
        data = {"id": job_id, "step": record.step, "total_steps": record.total_steps}
        record.publish("progress", {**data, "preview_url": url})
        return record.cancelled

    def complete(self, job_id: str, outcome: dict) -> None:
        """The replica's answer: {"state": "done", "results": [...], "raws": [...]} or
        {"state": "failed"|"cancelled", "error": {...}}."""
        record = self.jobs.get(job_id)
        self.running.discard(job_id)
        if record is None or record.state in FINISHED:
            return
        if outcome["state"] == "done":
            for index, (info, raw) in enumerate(
                zip(outcome["results"], outcome["raws"], strict=True)
            ):
                record.results.append(info)
                record.raws.append(raw)
                record.publish("result", {"index": index})
        record.replica = outcome.get("replica", record.replica)
        if outcome.get("summary"):
            record.summary = outcome["summary"]
        self.finish(record, outcome["state"], outcome.get("error"))

    def lost(self, job_id: str, why: str) -> bool:
        """The replica running it died. Requeue at the head (True) or fail it (False)."""
        record = self.jobs.get(job_id)
        self.running.discard(job_id)
        if record is None or record.state in FINISHED:
            return False
        if record.cancelled:
            self.finish(record, "cancelled")
            return False
        if record.attempts < MAX_ATTEMPTS:
            log.warning("job %s: its replica was lost (%s); retrying once", job_id, why)
            record.state, record.step = "queued", 0
            self.queue.appendleft(record.client, job_id)
            record.publish("queued", {"id": job_id, "state": "queued"})
            return True
        message = (
            "the generation worker running this job stopped twice (crashed or was restarted); "
            "the job was not retried again: submit it again, and if it keeps happening, "
            "ask whoever runs the server to check its log"
        )
        self.finish(record, "failed", {"code": "worker_lost", "message": message, "field": None})
        return False

    def cancel(self, job_id: str) -> dict | None:
        record = self.jobs.get(job_id)
        if record is None:
            return None
        if record.state in FINISHED:
            return record.snapshot()
        record.cancelled = True
        if record.state == "queued":
            self.queue.remove(job_id)
            self.finish(record, "cancelled")
        return record.snapshot()

    def finish(self, record: Record, state: str, error: dict | None = None) -> None:
        record.state = state
        record.error = error
        record.finished_at = time.time()
        record.request = None
        data: dict = {"id": record.id, "state": state}
        if error is not None:
            data["error"] = error
        record.publish(state, data)

    def expire(self, now: float) -> None:
        finished = [r for r in self.jobs.values() if r.state in FINISHED and r.finished_at]
        finished.sort(key=lambda r: r.finished_at or 0.0)
        excess = max(0, len(finished) - self.max_jobs_kept)
        for index, record in enumerate(finished):
            if index < excess or now - (record.finished_at or now) > self.job_ttl_s:
                del self.jobs[record.id]

    def queue_length(self) -> int:
        return len(self.queue) + len(self.running)


def model_key(model: str | None, vae: str | None, default: str | None) -> str:
    """Ray Serve's multiplexed model id of a job: what decides the weights a replica must hold.

    The checkpoint (the default one when the job names none) and an explicit VAE: both are
    loaded into the replica's pipeline and swapping either costs a reload. LoRAs are not part of
    the key: they are applied per job on top of the resident checkpoint (cheap next to loading
    one), and keying on them would split artists on one checkpoint across replicas.
    """
    key = model or default or "default"
    return f"{key}|vae={vae}" if vae else key


def checkpoint_of(key: str) -> str | None:
    """The checkpoint name of a model key (None for the server's default)."""
    name = key.split("|vae=", 1)[0]
    return None if name == "default" else name
