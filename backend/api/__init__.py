"""The v1 HTTP API (FastAPI). Build it with ``backend.api.app.create_app(settings, engine)``."""

from __future__ import annotations
