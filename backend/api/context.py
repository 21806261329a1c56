"""What every route needs, kept on ``app.state`` by ``create_app`` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from backend.engine.types import EngineProtocol
from backend.jobs import JobQueue
from backend.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    engine: EngineProtocol
    queue: JobQueue


def get_context(request: Request) -> ApiContext:
    return request.app.state.context
