"""A queue that is fair between clients: round-robin over clients, FIFO within each client.

One artist's batch of 50 jobs cannot starve another artist: after every job the next one comes
from the next client in the rotation, so a client that submits one job waits for at most one
job of every other client. A client joins the rotation at its end when its first job arrives
and leaves it when its last queued job is taken. Used by the single-process ``JobQueue`` and by
the cluster's shared job registry (``backend.cluster.registry``). Not thread-safe: the owner
holds its own lock.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._clients: collections.OrderedDict[str, collections.deque[tuple[str, T]]] = (
            collections.OrderedDict()
        )

    def append(self, client: str, item: T) -> None:
        self._clients.setdefault(client, collections.deque()).append((client, item))

    def appendleft(self, client: str, item: T) -> None:
        """Put ``item`` back at the head: its client is served next (a retried job)."""
        self._clients.setdefault(client, collections.deque()).appendleft((client, item))
        self._clients.move_to_end(client, last=False)

    def popleft(self) -> T:
        """The next item in fair order; IndexError when empty."""
        if not self._clients:
            raise IndexError("pop from an empty FairQueue")
        client, items = next(iter(self._clients.items()))
        _, item = items.popleft()
        if items:
            self._clients.move_to_end(client)
        else:
            del self._clients[client]
        return item

    def remove(self, item: T) -> bool:
        for client, items in self._clients.items():
            for entry in items:
                if entry[1] == item:
                    items.remove(entry)
                    if not items:
                        del self._clients[client]
                    return True
        return False

    def count(self, client: str) -> int:
        items = self._clients.get(client)
        return len(items) if items else 0

    def order(self) -> list[T]:
        """Every queued item in the order they will be served."""
        lanes = [list(items) for items in self._clients.values()]
        out: list[T] = []
        depth = 0
        while True:
            layer = [lane[depth][1] for lane in lanes if depth < len(lane)]
            if not layer:
                return out
            out.extend(layer)
            depth += 1

    def index(self, item: T) -> int:
        """Items served before ``item``; ValueError if it is not queued."""
        for position, queued in enumerate(self.order()):
            if queued == item:
                return position
        raise ValueError("item is not queued")

    def clear(self) -> None:
        self._clients.clear()

    def __contains__(self, item: object) -> bool:
        return any(entry[1] == item for entry in self._entries())

    def _entries(self) -> Iterator[tuple[str, T]]:
        for items in self._clients.values():
            yield from items

    def __iter__(self) -> Iterator[T]:
        return iter(self.order())

    def __len__(self) -> int:
        return sum(len(items) for items in self._clients.values())

    def __bool__(self) -> bool:
        return bool(self._clients)
