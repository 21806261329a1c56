"""``create_app(settings, engine)``: the FastAPI application for one engine and one queue.

Layers: this package is HTTP only (parsing, validation, status codes); ``backend.jobs`` owns
the queue and the worker thread; the engine knows nothing of HTTP. No CORS middleware is
installed on purpose (browsers on other origins get no access), and no static/directory routes.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import __version__
from backend.api import routes_info, routes_jobs, routes_live, routes_preprocess, routes_styles
from backend.api.auth import BodyLimitMiddleware, TokenMiddleware
from backend.api.context import ApiContext
from backend.api.errors import install_handlers
from backend.api.openapi import install_openapi
from backend.api.origin_guard import OriginGuardMiddleware
from backend.api.rate_limit import RateLimitMiddleware, TokenBuckets
from backend.api.tokens import TokenTable
from backend.engine.types import EngineProtocol
from backend.jobs import JobQueue
from backend.live import LiveSessions
from backend.outputs import OutputWriter
from backend.protocol import PROTOCOL_VERSION
from backend.settings import Settings
from backend.styles import StyleStore

log = logging.getLogger(__name__)


def create_queue(settings: Settings, engine: EngineProtocol) -> JobQueue:
    return JobQueue(
        engine,
        OutputWriter(settings.output_dir),
        max_queue=settings.max_queue,
        max_queued_per_client=settings.max_queued_per_client,
        job_ttl_s=settings.job_ttl_s,
        max_jobs_kept=settings.max_jobs_kept,
        preload=settings.preload,
        preload_model=settings.default_model,
        log_progress=settings.log_progress,
    )


def create_app(
    settings: Settings, engine: EngineProtocol, queue: JobQueue | None = None
) -> FastAPI:
    """The app; its lifespan starts the worker thread and stops it (cancelling jobs) on exit.

    ``queue`` replaces the in-process queue (the cluster's registry-backed one,
    ``backend.cluster.cluster_queue``); the routes and the contract stay the same."""
    queue = queue if queue is not None else create_queue(settings, engine)
    live = LiveSessions(engine, settings.output_dir)
    queue.attach_priority(live)
    live.attach(queue.wake)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        queue.start()
        try:
            yield
        finally:
            live.stop()
            queue.stop()

    app = FastAPI(
        title="Diffusion Layers backend",
        version=__version__,
        summary=f"Protocol v{PROTOCOL_VERSION} between the Krita plugin and the local backend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ApiContext(settings=settings, engine=engine, queue=queue)
    app.state.live = live
    app.state.styles = StyleStore(settings.resolved_styles_dir())
    install_handlers(app)
    install_openapi(app)
    app.include_router(routes_info.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_preprocess.router)
    app.include_router(routes_live.router)
    app.include_router(routes_styles.router)
    # Added last = runs first: refuse unauthenticated requests before counting their bodies.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    tokens = TokenTable(settings.token, settings.tokens_file)
    app.add_middleware(TokenMiddleware, token=settings.token, table=tokens)
    # Web pages may not drive the server (CSRF, DNS rebinding): see origin_guard.py.
    app.add_middleware(
        OriginGuardMiddleware, check_host=not tokens.required, bound_host=settings.host
    )
    # Outermost: every request counts against its client's bucket, unauthenticated ones too.
    buckets = None
    if settings.rate_limit_per_s > 0:
        buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.add_middleware(
        RateLimitMiddleware, buckets=buckets, limit_loopback=settings.rate_limit_loopback
    )
    return app
