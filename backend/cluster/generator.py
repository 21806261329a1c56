"""A generation replica: one engine, one job at a time, results on disk before it answers.

Ray Serve runs ``num_replicas`` of these (``num_gpus`` each on a studio, ``num_cpus`` in tests).
The registry calls ``generate`` with the job's model key as the multiplexed model id; Serve routes
the call (``router.CheckpointRouter``) to the replica holding that checkpoint when it is free,
else to a free one that loads it (``get_model`` keeps one resident per replica). Every step is reported to the registry, whose answer says whether the job was
cancelled. Results are written to the shared output folder, then returned with their raw pixels;
only then does the registry mark the job done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from backend.cluster.registry import NAMESPACE, REGISTRY_NAME, checkpoint_of
from backend.engine import errors as engine_errors
from backend.engine.types import CancelToken, GenerationRequest, Progress
from backend.fields import canonical_field
from backend.outputs import OutputError, OutputWriter, encode_png, rgba_to_bgra_bytes
from backend.settings import Settings

log = logging.getLogger(__name__)


class Generator:
    def __init__(self, settings: dict) -> None:
        from backend.engine.engine import Engine

        self.settings = Settings.from_dict(settings)
        self.engine = Engine(self.settings.engine_config())
        # No background compaction: the file is final when the job is reported done, and any
        # ingress on any machine may serve it at once.
        self.writer = OutputWriter(self.settings.output_dir, compact_level=None)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._registry: Any = None

    def registry(self) -> Any:
        if self._registry is None:
            import ray

            self._registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
        return self._registry

    async def get_model(self, key: str) -> str:
        """Load the checkpoint of ``key`` (Serve keeps one per replica, see app.py)."""
        await asyncio.to_thread(self.engine.preload, checkpoint_of(key))
        return key

    async def generate(self, job_id: str, request: GenerationRequest) -> dict:
        from ray import serve

        key = serve.get_multiplexed_model_id()
        try:
            if key:
                await self._multiplexed_model(key)
        except engine_errors.EngineError as exc:  # the checkpoint cannot be loaded here
            log.error("job %s: loading %s failed: %s", job_id, key, exc, exc_info=exc)
            error = {"code": exc.code, "message": exc.message, "field": canonical_field(exc.field)}
            return {"state": "failed", "error": error, "replica": self.name}
        return await asyncio.to_thread(self._generate, job_id, request)

    async def pid(self) -> int:
        return os.getpid()

    async def loaded(self) -> str | None:
        return self.engine.loaded_model

    def _generate(self, job_id: str, request: GenerationRequest) -> dict:
        import ray

        cancel = CancelToken()
        registry = self.registry()

        def report(progress: Progress) -> None:
            preview = None
            if progress.preview is not None:
                try:
                    preview = encode_png(progress.preview)
                except (ValueError, TypeError, OSError):
                    preview = None
            answer = registry.progress.remote(
                job_id, progress.step, progress.total, preview, self.name
            )
            if ray.get(answer):
                cancel.cancel()

        try:
            layers = self.engine.generate(request, report, cancel)
            cancel.check()
        except engine_errors.Cancelled:
            return {"state": "cancelled", "replica": self.name}
        except engine_errors.EngineError as exc:
            log.error("job %s failed: %s", job_id, exc, exc_info=exc)
            error = {"code": exc.code, "message": exc.message, "field": canonical_field(exc.field)}
            return {"state": "failed", "error": error, "replica": self.name}
        except MemoryError:
            message = "out of memory: try a smaller size or batch"
            error = {"code": "out_of_memory", "message": message, "field": None}
            return {"state": "failed", "error": error, "replica": self.name}
        return self._write(job_id, layers)

    def _write(self, job_id: str, layers: list) -> dict:
        import time

        results, raws = [], []
        created = time.time()
        try:
            for index, layer in enumerate(layers):
                path = self.writer.write(job_id, index, layer, created)
                info = {"index": index, "seed": layer.seed, "x": layer.x, "y": layer.y}
                info.update(width=layer.width, height=layer.height, path=str(path))
                # mode "layers": the result's place in the decomposition (JobResult fields)
                info.update(
                    layer_index=layer.metadata.layer_index,
                    composite_error=layer.metadata.composite_error,
                )
                results.append(info)
                raws.append(rgba_to_bgra_bytes(layer.image))
        except OutputError as exc:
            log.error("job %s: %s", job_id, exc, exc_info=exc)
            error = {"code": exc.code, "message": str(exc), "field": None}
            return {"state": "failed", "error": error, "replica": self.name}
        return {"state": "done", "results": results, "raws": raws, "replica": self.name}

    async def _multiplexed_model(self, key: str) -> str:
        return await self.get_model(key)
