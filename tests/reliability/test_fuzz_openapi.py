"""Item 1, generated: schemathesis fuzzes every operation of our served OpenAPI schema.

Both schema-valid (positive) and schema-violating (negative) requests; every answer must be
below 500, and every error must be our ErrorResponse JSON with a message. The fast tier tries
DL_FUZZ_EXAMPLES per operation and mode (default 15: a few hundred cases in all); the slow
tier (``-m slow``) tries DL_FUZZ_SLOW_EXAMPLES (default 150: thousands).
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from api.fake_engine import FakeEngine  # noqa: E402
from api.harness import job_params, serve_app, submit, wait_job  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from .support import make_settings  # noqa: E402

FAST_EXAMPLES = int(os.environ.get("DL_FUZZ_EXAMPLES", "15"))
SLOW_EXAMPLES = int(os.environ.get("DL_FUZZ_SLOW_EXAMPLES", "150"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Small pixel limit: schema-valid jobs stay cheap. Big queue: valid jobs may pile up while
    # the fuzzer runs, and 'queue full' (503) is a load answer, not what this test is about.
    settings = make_settings(
        tmp_path_factory.mktemp("fuzz"), max_image_pixels=128 * 128, max_queue=100_000
    )
    with serve_app(settings, FakeEngine()) as running:
        yield running


def fuzz(server, examples: int) -> dict:
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    tally = {"cases": 0, "2xx": 0, "4xx": 0, "5xx": 0, "operations": 0}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tally["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case) -> None:
                response = case.call(base_url=server.base_url, timeout=30)
                tally["cases"] += 1
                status = response.status_code
                label = f"{case.method} {case.formatted_path} -> {status}"
                if status >= 500:
                    tally["5xx"] += 1
                    failures.append(f"{label}: {response.text[:200]}")
                    return
                if status >= 400:
                    tally["4xx"] += 1
                    error = response.json().get("error", {})
                    if not (error.get("code") and error.get("message")):
                        failures.append(f"{label}: not an ErrorResponse: {response.text[:200]}")
                else:
                    tally["2xx"] += 1

            try:
                run()
            except Unsatisfiable:
                # Nothing in this operation can be made schema-invalid (e.g. GET /v1/health).
                assert mode == GenerationMode.NEGATIVE, operation.label
                tally["no_negative"] = tally.get("no_negative", 0) + 1
    print(f"\nschemathesis: {tally}")
    assert not failures, "\n".join(failures[:20])
    return tally


def check_still_healthy(server) -> None:
    with server.client() as http:
        assert http.get("/v1/health").json()["status"] == "ok"
        assert (
            wait_job(http, submit(http, job_params(seed=5))["id"], timeout=120)["state"] == "done"
        )


def test_fuzzed_requests_never_get_5xx(server):
    tally = fuzz(server, FAST_EXAMPLES)
    assert tally["operations"] >= 10
    assert tally["4xx"] > 0 and tally["2xx"] > 0  # both kinds of request were really made
    check_still_healthy(server)


@pytest.mark.slow
def test_fuzzed_requests_never_get_5xx_thousands(server):
    tally = fuzz(server, SLOW_EXAMPLES)
    assert tally["cases"] >= 1500
    check_still_healthy(server)
