"""``serve --cluster``: the v1 API as a Ray Serve application.

Three parts, all in the Ray namespace ``diffusion-layers``:

- the job registry, a named detached actor (``registry_actor.RegistryActor``), created first;
- the ``Ingress`` deployment: our FastAPI app from ``create_app`` (same routes, same OpenAPI)
  on a ``ClusterQueue`` that keeps every job in the registry;
- the ``Generator`` deployment: ``replicas`` (or autoscaling ``min_replicas``..``max_replicas``)
  generation replicas, one engine each, ``num_gpus`` (``num_cpus`` on CPU-only test machines),
  one job at a time, model-multiplexed by checkpoint and routed by ``router.CheckpointRouter``
  (the replica holding the checkpoint when it is free, else any free replica).

Security defaults: a local Ray instance starts with the dashboard off and Ray's token
authentication on (refused if ``RAY_AUTH_MODE=disabled``); the Serve HTTP proxy binds
``settings.host``/``settings.port`` (127.0.0.1 unless told otherwise, TLS from ``ssl_certfile``/
``ssl_keyfile``), and our own token check runs in the ingress as in the single process.
Multi-machine clusters are set up with ``ray start`` as docs/cluster.md shows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from backend.cluster.registry import APP_NAME, GENERATOR_NAME, NAMESPACE, REGISTRY_NAME
from backend.settings import Settings

log = logging.getLogger(__name__)


class ClusterError(Exception):
    """The cluster cannot be started as asked; the message says what to change."""


@dataclass
class ClusterOptions:
    address: str | None = None  # None: start a local Ray instance; else "auto" or "host:port"
    replicas: int = 1
    min_replicas: int | None = None  # both set: autoscale between them
    max_replicas: int | None = None
    num_gpus: float = 1.0  # per generation replica
    num_cpus: float = 0.0  # per generation replica (tests: num_gpus=0, num_cpus=1)
    ingress_replicas: int = 1

    def check(self) -> None:
        if self.replicas < 1:
            raise ClusterError(f"replicas={self.replicas!r}: must be >= 1")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ClusterError("min_replicas/max_replicas: give both (autoscaling) or neither")
        if self.min_replicas is not None and self.max_replicas is not None:
            if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
                raise ClusterError(
                    f"min_replicas={self.min_replicas!r}, max_replicas={self.max_replicas!r}: "
                    "need 0 <= min <= max and max >= 1"
                )
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ClusterError(f"num_gpus={self.num_gpus!r}/num_cpus={self.num_cpus!r}: >= 0")
        if self.ingress_replicas < 1:
            raise ClusterError(f"ingress_replicas={self.ingress_replicas!r}: must be >= 1")

    @property
    def capacity(self) -> int:
        """Jobs in flight at once: one per replica (the most replicas when autoscaling)."""
        return self.max_replicas if self.max_replicas is not None else self.replicas


class Ingress:
    """The ingress replica: settings, an engine for the submit-time checks, the app."""

    def __init__(self, settings: dict, generator: Any = None) -> None:
        """``generator``: the Generator deployment's handle (bound into the same application so
        that Serve deploys both; the registry, not the ingress, sends it jobs)."""
        import ray

        from backend.cluster.cluster_queue import ClusterQueue
        from backend.engine.engine import Engine

        self.settings = Settings.from_dict(settings)
        self.engine = Engine(self.settings.engine_config())
        registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
        self.queue = ClusterQueue(registry, self.settings.default_model)

    def __serve_build_asgi_app__(self):
        from backend.api.app import create_app

        return PicklableBodies(create_app(self.settings, self.engine, queue=self.queue))


class PicklableBodies:
    """ASGI wrapper: response bodies as bytes. Serve pickles every message from the ingress
    replica to its HTTP proxy, and the zero-copy raw results are memoryviews (unpicklable)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_bytes(message: dict) -> None:
            body = message.get("body")
            if isinstance(body, memoryview):
                message = {**message, "body": body.tobytes()}
            await send(message)

        await self.app(scope, receive, send_bytes)


def start_ray(options: ClusterOptions, num_cpus: int | None = None) -> None:
    """Connect to ``options.address``, or start a local instance with the dashboard off.

    Ray's token authentication (on by default in the pinned Ray) guards its gRPC ports, which
    Ray binds on every interface; we refuse to start with it turned off."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        raise ClusterError(
            "RAY_AUTH_MODE=disabled turns off Ray's token authentication, and Ray's own ports "
            "listen on every network interface: unset it (see docs/cluster.md)"
        )
    if options.address:
        ray.init(address=options.address, namespace=NAMESPACE, log_to_driver=False)
        return
    ray.init(namespace=NAMESPACE, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def shutdown(options: ClusterOptions) -> None:
    """Stop what ``deploy`` started: the app and, for a local instance, Ray itself. On a shared
    cluster (``address`` set) the application keeps serving after this driver exits."""
    import ray

    if ray.is_initialized():
        ray.shutdown()  # a local instance goes with its processes, Serve's included


def start_registry(settings: Settings, options: ClusterOptions) -> Any:
    """The registry actor (the existing one when a previous run left it alive)."""
    import ray

    from backend.cluster.registry_actor import RegistryActor

    book = {
        "max_queue": settings.max_queue,
        "max_queued_per_client": settings.max_queued_per_client,
        "job_ttl_s": settings.job_ttl_s,
        "max_jobs_kept": settings.max_jobs_kept,
    }
    actor = ray.remote(RegistryActor).options(
        name=REGISTRY_NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,  # restarted empty if its process dies (see docs/cluster.md)
        max_concurrency=1000,
    )
    return actor.remote(book, options.capacity)


def build_application(settings: Settings, options: ClusterOptions):
    """The bound Serve application: Ingress and Generator in one app (``APP_NAME``), so the
    registry finds the Generator by (APP_NAME, GENERATOR_NAME)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from backend.cluster.generator import Generator
    from backend.cluster.router import CheckpointRouter

    class MultiplexedGenerator(Generator):
        @serve.multiplexed(max_num_models_per_replica=1)
        async def get_model(self, key: str) -> str:
            return await Generator.get_model(self, key)

    scaling: dict[str, Any] = {"num_replicas": options.replicas}
    if options.min_replicas is not None:
        scaling = {
            "autoscaling_config": {
                "min_replicas": options.min_replicas,
                "max_replicas": options.max_replicas,
                "target_ongoing_requests": 1,
            }
        }
    generator = serve.deployment(
        MultiplexedGenerator,
        name=GENERATOR_NAME,
        max_ongoing_requests=1,  # one job per engine; the registry holds the queue
        ray_actor_options={"num_gpus": options.num_gpus, "num_cpus": options.num_cpus},
        health_check_period_s=5,
        # The checkpoint's holder when it is free, else any free replica (router.py).
        request_router_config=RequestRouterConfig(request_router_class=CheckpointRouter),
        **scaling,
    )
    ingress = serve.deployment(
        serve.ingress()(Ingress),
        name="Ingress",
        num_replicas=options.ingress_replicas,
        max_ongoing_requests=1000,  # SSE streams are long-lived
        ray_actor_options={"num_cpus": 0},
    )
    data = settings.to_dict()
    return ingress.bind(data, generator.bind(data))


def deploy(settings: Settings, options: ClusterOptions, blocking: bool = False) -> Any:
    """Start (or join) Ray, the registry, Serve's proxy and the application; returns the
    registry handle. ``blocking`` serves until interrupted."""
    from ray import serve

    options.check()
    start_ray(options)
    registry = start_registry(settings, options)
    # HeadOnly: the API listens on the machine that runs `serve --cluster`, never on the
    # worker machines (Serve's default would open the port on every node).
    http: dict[str, Any] = {"host": settings.host, "port": settings.port, "location": "HeadOnly"}
    if settings.ssl_certfile:
        http.update(ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)
    serve.start(http_options=http)
    application = build_application(settings, options)
    serve.run(application, name=APP_NAME, route_prefix="/", blocking=blocking)
    return registry
