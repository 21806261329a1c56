"""Per-job event history that the worker thread writes and SSE subscribers read.

The worker publishes from its own thread; subscribers live on the asyncio loop and are woken
with ``loop.call_soon_threadsafe``. Each event carries a sequence number; a subscriber asks for
everything after the last number it saw, so a late subscriber first gets the events it missed.
Progress events replace the previous progress event at the tail, which keeps the history short
(queued, started, progress, result x batch, one terminal event) however many steps a job has.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

TERMINAL_EVENTS = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    seq: int
    name: str
    data: dict


class EventLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._seq = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def publish(self, name: str, data: dict) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, name, data)
            if name == "progress" and self._events and self._events[-1].name == "progress":
                self._events[-1] = event
            else:
                self._events.append(event)
            waiters = list(self._waiters)
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # the loop closed: that subscriber is gone
                pass
        return event

    def since(self, seq: int) -> list[Event]:
        with self._lock:
            return [event for event in self._events if event.seq > seq]

    @property
    def finished(self) -> bool:
        with self._lock:
            return bool(self._events) and self._events[-1].name in TERMINAL_EVENTS

    def subscribe(self) -> asyncio.Event:
        """An asyncio.Event set whenever something is published (call on the event loop)."""
        flag = asyncio.Event()
        with self._lock:
            self._waiters.append((asyncio.get_running_loop(), flag))
        return flag

    def unsubscribe(self, flag: asyncio.Event) -> None:
        with self._lock:
            self._waiters = [(loop, f) for loop, f in self._waiters if f is not flag]
