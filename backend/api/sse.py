"""Server-Sent Events for one job: replay what a subscriber missed, then follow live.

Wire format: ``id: <seq>`` / ``event: <name>`` / ``data: <json>`` and a blank line; a comment
line ``: ping`` every ``keepalive_s`` seconds while nothing happens. The stream ends after the
terminal event (``done``, ``failed`` or ``cancelled``). ``Last-Event-ID`` resumes after an id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from backend.events import TERMINAL_EVENTS, Event, EventLog

PING = ": ping\n\n"


def format_event(name: str, data: dict, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    events: EventLog,
    render: Callable[[Event], dict],
    keepalive_s: float,
    after: int = 0,
) -> AsyncIterator[str]:
    """Yield SSE text for every event after ``after`` until a terminal event."""
    flag = events.subscribe()
    seq = after
    try:
        while True:
            flag.clear()
            for event in events.since(seq):
                seq = event.seq
                yield format_event(event.name, render(event), event.seq)
                if event.name in TERMINAL_EVENTS:
                    return
            if events.finished and not events.since(seq):
                return  # resumed after the terminal event: nothing more will come
            try:
                await asyncio.wait_for(flag.wait(), keepalive_s)
            except asyncio.TimeoutError:
                yield PING
    finally:
        events.unsubscribe(flag)
