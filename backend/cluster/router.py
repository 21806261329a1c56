"""Which generation replica takes a job: the one holding its checkpoint when it is free, else
any free one (an empty replica first), the checkpoint being loaded there.

Ray Serve's default router for multiplexed deployments (power of two choices) first offers a job
only to the replicas holding its model id, then to "the replicas with the fewest models", for a
random 1-2 s matching window, picking two at random and probing them with a 0.1 s deadline. On a
loaded machine a probe that misses its deadline counts as "not free", and a job whose holder is
busy may wait for it although another replica is idle: with one job per replica
(``max_ongoing_requests=1``) short jobs on one checkpoint could all queue on one GPU while the
other idled (seen in CI: six 4-step jobs, one replica; which step of that procedure kept them
off the other replica was not pinned down: it depended on timing).

``CheckpointRouter`` makes the rule explicit, in one order tried on every routing attempt:

1. the replicas that hold the job's model key (``rank``: its checkpoint stays where it is loaded);
2. replicas holding no model (loading there evicts nothing);
3. every other replica (it drops its checkpoint for this one).

Within a group Serve's machinery picks the replica with the shortest queue among those that
accept (a replica accepts only when it runs nothing: ``max_ongoing_requests=1``). When no replica
accepts, the attempt is retried after Serve's backoff, holders first again. The registry sends no
more jobs than there are replicas (its dispatcher, registry_actor.py; the most replicas when
autoscaling), so a job that reaches the router waits only for a replica that is finishing its
job (or, autoscaling, for one being started).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from ray.serve.request_router import (
    FIFOMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

R = TypeVar("R")

# Queue-length probes: Serve's 0.1 s default is missed on a busy machine (two CPU cores, a
# replica loading a checkpoint), and a missed probe reads as "not free". Jobs take seconds.
PROBE_DEADLINE_S = 0.5
MAX_PROBE_DEADLINE_S = 2.0


def rank(replicas: Iterable[tuple[R, set[str]]], key: str) -> list[list[R]]:
    """Replicas in the order they are offered a job on model key ``key``.

    ``replicas``: (replica, the model keys it holds). Returns the non-empty groups of: holders of
    ``key``, replicas holding nothing, the rest; each group in the order given. An empty ``key``
    (a call without a model id) offers every replica at once."""
    pairs = list(replicas)
    if not key:
        return [[replica for replica, _ in pairs]] if pairs else []
    holders = [replica for replica, keys in pairs if key in keys]
    empty = [replica for replica, keys in pairs if not keys]
    others = [replica for replica, keys in pairs if keys and key not in keys]
    return [group for group in (holders, empty, others) if group]


class CheckpointRouter(FIFOMixin, MultiplexMixin, RequestRouter):
    """Serve request router of the Generator deployment (see the module docstring)."""

    queue_len_response_deadline_s = PROBE_DEADLINE_S
    max_queue_len_response_deadline_s = MAX_PROBE_DEADLINE_S

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        key = ""
        if pending_request is not None:
            key = pending_request.metadata.multiplexed_model_id or ""
            # Nobody accepted: wait (Serve's backoff) before offering the groups again.
            pending_request.routing_context.should_backoff = True
        pairs: list[tuple[Any, set[str]]] = [
            (replica, set(replica.multiplexed_model_ids)) for replica in candidate_replicas
        ]
        return rank(pairs, key)
