"""Many concurrent clients, and a steady job stream without memory growth."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import time
import tracemalloc

import numpy as np
import pytest

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import job_params, raw_bgra, read_events, rgba_image, serve_app, submit, wait_job

SOAK_SECONDS = float(os.environ.get("DL_SOAK_SECONDS", "10"))


def test_eight_concurrent_clients(server):
    def one_client(n: int) -> tuple[str, list[int], list[str]]:
        with server.client() as http:
            params = job_params(mode="img2img", strength=0.0, seed=n, batch=2)
            image = rgba_image(64, 64, seed=n)
            job_id = submit(http, params, image=raw_bgra(image))["id"]
            names = [name for name, _ in read_events(http, job_id)]
            info = http.get(f"/v1/jobs/{job_id}").json()
            raw = http.get(info["results"][0]["raw_url"]).content
            pixels = np.frombuffer(raw, dtype=np.uint8).reshape(64, 64, 4)[:, :, [2, 1, 0]]
            assert np.array_equal(pixels, image[:, :, :3])  # each client got its own image
            return info["state"], [r["seed"] for r in info["results"]], names

    with cf.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one_client, range(8)))
    for n, (state, seeds, names) in enumerate(outcomes):
        assert state == "done" and seeds == [n, n + 1]
        assert names[0] == "queued" and names[-1] == "done"
    with server.client() as http:
        assert http.get("/v1/health").json()["queue_length"] == 0


def soak(tmp_path, seconds: float, interval: float = 1.0) -> None:
    """One 1024x1024 img2img job per ``interval`` for ``seconds``; memory must level off.

    Each job moves ~8 MB (4 MB input, 4 MB raw result) through Python objects; only the last
    ``max_jobs_kept`` jobs may stay alive. tracemalloc counts what Python (numpy included)
    still holds, which malloc fragmentation cannot blur the way it blurs RSS.
    """
    settings = make_settings(tmp_path, max_jobs_kept=3)
    image = raw_bgra(rgba_image(1024, 1024))
    params = job_params(mode="img2img", width=1024, height=1024, steps=2, seed=1)
    held: list[int] = []
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        start = time.monotonic()
        count = 0
        tracemalloc.start()
        try:
            while time.monotonic() - start < seconds:
                tick = time.monotonic()
                job_id = submit(http, params, image=image)["id"]
                assert wait_job(http, job_id)["state"] == "done"
                count += 1
                gc.collect()
                held.append(tracemalloc.get_traced_memory()[0])
                time.sleep(max(0.0, interval - (time.monotonic() - tick)))
        finally:
            tracemalloc.stop()
        assert server.app.state.context.queue.jobs_kept() <= 3
    assert count >= 6, f"only {count} jobs in {seconds} s"
    # After the job memory is full (job 4 on), what is held must stay flat: less than one
    # job's worth of growth in total, where a leak would add ~8 MB per job.
    steady = held[3:]
    growth = max(steady) - steady[0]
    assert growth < 6 * 2**20, f"held memory grew {growth / 2**20:.1f} MiB over {count} jobs"
    assert max(held) < 40 * 2**20, f"held {max(held) / 2**20:.1f} MiB at most"


def test_job_per_second_without_memory_growth(tmp_path):
    soak(tmp_path, SOAK_SECONDS)


@pytest.mark.slow
def test_job_per_second_for_a_minute(tmp_path):
    soak(tmp_path, 60.0)


def test_expired_jobs_leave_memory_not_disk(tmp_path):
    settings = make_settings(tmp_path, max_jobs_kept=2, job_ttl_s=0.5)
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        ids = [wait_job(http, submit(http, job_params())["id"])["id"] for _ in range(4)]
        assert [http.get(f"/v1/jobs/{i}").status_code for i in ids] == [404, 404, 200, 200]
        time.sleep(0.6)
        assert http.get(f"/v1/jobs/{ids[-1]}").status_code == 404
    assert len(list((tmp_path / "outputs").glob("*.png"))) == 4
