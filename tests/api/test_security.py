"""Token on every route, loopback-only without a token, no CORS."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from backend.api.auth import token_matches
from backend.settings import Settings, SettingsError

from .conftest import make_settings
from .fake_engine import FakeEngine
from .harness import REPO, job_files, job_params, serve_app, wait_job

TOKEN = "s3cret-token-for-tests"


def all_routes() -> list[tuple[str, str]]:
    """(method, path) for every route in the committed OpenAPI schema, plus the schema."""
    schema = json.loads((REPO / "backend/api/openapi.json").read_text())
    routes = [("GET", "/openapi.json")]
    for path, methods in schema["paths"].items():
        concrete = path.replace("{job_id}", "0123456789abcdef").replace("{index}", "0")
        routes += [(method.upper(), concrete) for method in methods]
    return routes


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("token"), token=TOKEN)
    with serve_app(settings, FakeEngine()) as server:
        yield server


def test_every_route_needs_the_token(token_server):
    routes = all_routes()
    assert len(routes) >= 10
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = httpx.request(method, token_server.base_url + path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_right_token_works_everywhere(token_server):
    with token_server.client(token=TOKEN) as http:
        assert http.get("/openapi.json").status_code == 200
        assert http.get("/v1/health").status_code == 200
        assert http.get("/v1/models").status_code == 200
        created = http.post("/v1/jobs", files=job_files(job_params()))
        assert created.status_code == 202
        info = wait_job(http, created.json()["id"])
        assert http.get(info["results"][0]["url"]).status_code == 200
        assert http.get(info["results"][0]["raw_url"]).status_code == 200
        assert http.delete(f"/v1/jobs/{info['id']}").status_code == 200


def test_token_compare():
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    assert token_matches(f"bearer {TOKEN}", TOKEN)
    assert not token_matches(f"Basic {TOKEN}", TOKEN)
    assert not token_matches(f"Bearer {TOKEN}x", TOKEN)
    assert not token_matches(None, TOKEN)
    assert not token_matches("Bearer é", TOKEN)


def test_no_cors_headers(client):
    preflight = client.options(
        "/v1/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (403, 404, 405)  # 403: origin_guard refuses web pages
    response = client.get("/v1/health", headers={"Origin": "https://evil.example"})
    assert not any(h.lower().startswith("access-control-") for h in response.headers)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_without_token_refused(host):
    with pytest.raises(SettingsError, match="token"):
        Settings(host=host).check()
    Settings(host=host, token=TOKEN).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_without_token_allowed(host):
    Settings(host=host).check()


def test_serve_refuses_public_bind_without_token():
    result = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--model", "tiny", "--host", "0.0.0.0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert "refusing to start without a token" in result.stderr
