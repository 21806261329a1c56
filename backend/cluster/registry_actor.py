"""The job registry as an async Ray actor: ``JobBook`` plus waiting and the dispatch loop.

Every method runs on the actor's one event loop, so the book needs no lock. Ingress replicas
call ``submit``/``get``/``wait``/``cancel``/``raw``; generation replicas call
``progress`` every step (its answer tells them to stop when the job was cancelled).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from backend.cluster.registry import APP_NAME, GENERATOR_NAME, JobBook, Record, RegistryError

log = logging.getLogger(__name__)


class RegistryActor:
    def __init__(self, book_options: dict, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity!r}: must be >= 1")
        self.book = JobBook(**book_options)
        self.capacity = capacity
        self._changed: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._handle: Any = None

    # --- change notification -------------------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _touch(self) -> None:
        """Wake everyone waiting for a change (waiters take a fresh event next time)."""
        event = self._event()
        self._changed = asyncio.Event()
        event.set()

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    # --- ingress side --------------------------------------------------------------------

    async def submit(self, request: Any, client: str, summary: str, model_key: str) -> dict:
        self._ensure_dispatcher()
        try:
            created = self.book.submit(request, client, summary, model_key)
        except RegistryError as exc:
            return {"error": {"code": exc.code, "message": str(exc)}}
        self._touch()
        return created

    async def get(self, job_id: str, after: int | None = None) -> dict | None:
        record = self.book.jobs.get(job_id)
        return None if record is None else self._snapshot(record, after)

    async def wait(self, job_id: str, after: int, timeout: float) -> dict | None:
        """The job once it has an event after ``after`` (or after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = self.book.jobs.get(job_id)
            if record is None or record.seq > after:
                return None if record is None else self._snapshot(record, after)
            left = deadline - loop.time()
            if left <= 0:
                return self._snapshot(record, after)
            try:
                await asyncio.wait_for(self._event().wait(), left)
            except asyncio.TimeoutError:
                pass

    async def cancel(self, job_id: str) -> dict | None:
        snapshot = self.book.cancel(job_id)
        self._touch()
        return snapshot

    async def raw(self, job_id: str, index: int) -> bytes | None:
        record = self.book.jobs.get(job_id)
        if record is None or not (0 <= index < len(record.raws)):
            return None
        return record.raws[index]

    async def queue_length(self) -> int:
        return self.book.queue_length()

    async def ping(self) -> str:
        self._ensure_dispatcher()
        return "ok"

    def _snapshot(self, record: Record, after: int | None) -> dict:
        snapshot = record.snapshot(after)
        snapshot["position"] = self.book.position(record.id)
        return snapshot

    # --- generation side -----------------------------------------------------------------

    async def progress(
        self, job_id: str, step: int, total: int, preview: bytes | None, replica: str = ""
    ) -> bool:
        stop = self.book.progress(job_id, step, total, preview, replica)
        self._touch()
        return stop

    async def _dispatch(self) -> None:
        """Start the next fair job whenever fewer than ``capacity`` are in flight."""
        while True:
            while len(self.book.running) < self.capacity:
                record = self.book.next()
                if record is None:
                    break
                self._touch()
                asyncio.get_running_loop().create_task(self._run(record))
            await self._event().wait()

    async def _run(self, record: Record) -> None:
        from ray import exceptions as ray_errors
        from ray import serve

        if self._handle is None:
            self._handle = serve.get_deployment_handle(GENERATOR_NAME, app_name=APP_NAME)
        handle = self._handle.options(multiplexed_model_id=record.model_key)
        try:
            outcome = await handle.generate.remote(record.id, record.request)
        except (ray_errors.RayActorError, ray_errors.ActorUnavailableError) as exc:
            self.book.lost(record.id, f"{type(exc).__name__}")
            self._touch()
            return
        except Exception as exc:  # a bug in the replica: fail this job clearly, go on
            log.exception("job %s: the generation replica raised", record.id)
            message = f"internal error in the generation worker: {type(exc).__name__}"
            outcome = {
                "state": "failed",
                "error": {"code": "internal_error", "message": message, "field": None},
            }
        self.book.complete(record.id, outcome)
        self._touch()
