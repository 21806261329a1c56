"""Uvicorn serving that tells the job queue first when the process is asked to stop.

Uvicorn's graceful shutdown waits (up to ``timeout_graceful_shutdown`` seconds) for open
connections, the job's event stream among them, before the app's lifespan ends. Without this
hook the running job went on generating in that wait and could even be delivered after the
artist had stopped the server; now the queue hears of the stop first, so the job ends
``failed`` with code ``server_stopped`` and the open stream carries that to the plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def stopping_server(app: Any, on_stopping: Callable[[], None], **config: Any):
    """A ``uvicorn.Server`` for ``app`` whose shutdown first calls ``on_stopping()`` (in the
    event loop, so it must not block), before connections are drained. ``config``: the
    keyword arguments of ``uvicorn.Config``."""
    import uvicorn

    class StoppingServer(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            on_stopping()
            await super().shutdown(sockets=sockets)

    return StoppingServer(uvicorn.Config(app, **config))


def serve(app: Any, on_stopping: Callable[[], None], **config: Any) -> None:
    """Run ``app`` until SIGINT/SIGTERM (see ``stopping_server``)."""
    stopping_server(app, on_stopping, **config).run()
