"""One local Ray cluster per test session: 2 generation replicas of the tiny model (num_cpus in
place of num_gpus), the registry and the ingress, on a free loopback port."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api.harness import free_port

ray = pytest.importorskip("ray", reason="!!! the cluster tier needs the cluster extra (ray[serve])")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Cluster:
    base_url: str
    registry: Any
    settings: Any
    tokens_file: str

    def client(self, token: str, client_id: str | None = None, timeout: float = 120.0):
        headers = {"Authorization": f"Bearer {token}"}
        if client_id:
            headers["X-Client-Id"] = client_id
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def record(self, job_id: str) -> dict:
        return ray.get(self.registry.get.remote(job_id))

    def generator_names(self) -> list[str]:
        return self._replicas("#Generator#")

    def ingress_names(self) -> list[str]:
        return self._replicas("#Ingress#")

    def _replicas(self, part: str) -> list[str]:
        """Live Serve replica actors of one deployment (names in the 'serve' namespace)."""
        names = []
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == "serve" and part in entry["name"]:
                names.append(entry["name"])
        return names


TOKENS = {"ana": "token-of-ana-123", "ben": "token-of-ben-456", "cat": "token-of-cat-789"}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    from ray import serve

    from backend.cluster.app import ClusterOptions, deploy, start_ray
    from backend.settings import Settings

    root = tmp_path_factory.mktemp("cluster")
    tokens_file = root / "tokens.txt"
    tokens_file.write_text("".join(f"{n} {t}\n" for n, t in TOKENS.items()))
    os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    settings = Settings(
        port=free_port(),
        default_model="tiny",
        device="cpu",
        tiny_dir=str(root / "tiny"),
        output_dir=str(root / "out"),
        keepalive_s=0.5,
        log_progress=False,
        tokens_file=str(tokens_file),
        max_queue=128,
        rate_limit_per_s=0,
    )
    options = ClusterOptions(replicas=2, num_gpus=0, num_cpus=1)
    start_ray(options, num_cpus=2)
    try:
        registry = deploy(settings, options)
        base = f"http://127.0.0.1:{settings.port}"
        headers = {"Authorization": f"Bearer {TOKENS['ana']}"}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/health", headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield Cluster(base, registry, settings, str(tokens_file))
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_job(http: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = http.get(f"/v1/jobs/{job_id}").json()
        if info.get("state") in ("done", "failed", "cancelled"):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {info} after {timeout} s")
        time.sleep(0.2)


def sse_events(
    http: httpx.Client, job_id: str, last_event_id: int | None = None, stop_after: int = 0
) -> list[tuple[int, str, dict]]:
    """(id, name, data) of a job's SSE stream until it ends (or ``stop_after`` events)."""
    import json

    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    events: list[tuple[int, str, dict]] = []
    seq, name = 0, None
    with http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name is not None:
                events.append((seq, name, json.loads(line[6:])))
                name = None
                if stop_after and len(events) >= stop_after:
                    break
    return events
