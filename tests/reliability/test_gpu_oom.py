"""GPU tier: a REAL CUDA out-of-memory (the GPU is full: another program holds its memory).

The job fails with ``out_of_memory``, the server stays up, and once the memory is free again
the next job succeeds. Runs only where CUDA works (``pytest -m gpu``).
"""

from __future__ import annotations

import pytest
from api.harness import job_params, serve_app, submit, wait_job

from .support import make_settings

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_real_cuda_oom_fails_the_job_and_the_next_succeeds(tmp_path):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    config = EngineConfig(default_model="tiny", tiny_dir=str(tmp_path / "tiny"), device="cuda")
    engine = Engine(config)
    engine.preload("tiny")
    assert engine.device.startswith("cuda")
    with serve_app(make_settings(tmp_path), engine) as server, server.client(timeout=120) as http:
        assert wait_job(http, submit(http, job_params(seed=1))["id"], 300)["state"] == "done"
        # 1. Another program takes (almost) all free GPU memory.
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info()
        hog = torch.empty(max(0, free - 64 * 2**20), dtype=torch.uint8, device="cuda")
        try:
            big = job_params(width=1024, height=1024, batch=4, seed=2)
            info = wait_job(http, submit(http, big)["id"], 300)
        finally:
            del hog
            torch.cuda.empty_cache()
        # 2. That job failed clearly; nothing else did.
        assert info["state"] == "failed", info
        assert info["error"]["code"] == "out_of_memory", info["error"]
        assert http.get("/v1/health").json()["status"] == "ok"
        # 3. Memory is free again: the same job now succeeds.
        again = wait_job(http, submit(http, big)["id"], 300)
        assert again["state"] == "done" and len(again["results"]) == 4
