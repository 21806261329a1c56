"""Item 4, remote mode: token on every route, loopback-only without one, TLS, no CORS, no
listings, configurable limits, a per-client rate limit, and no pickle loading by default."""

from __future__ import annotations

import hmac
import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from api.fake_engine import FakeEngine
from api.harness import REPO, free_port, job_files, job_params, serve_app, wait_job

import backend.api.auth
from backend.api.rate_limit import RateLimitError, TokenBuckets
from backend.settings import Settings, SettingsError

from .support import make_settings

TOKEN = "studio-token-0123456789"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("remote"), token=TOKEN)
    with serve_app(settings, FakeEngine()) as running:
        yield running


def served_routes(base_url: str) -> list[tuple[str, str]]:
    schema = httpx.get(base_url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    routes = [("GET", "/openapi.json"), ("GET", "/v1/nothing-here"), ("GET", "/")]
    for path, methods in schema.json()["paths"].items():
        concrete = path.replace("{job_id}", "0123456789abcdef").replace("{index}", "0")
        concrete = concrete.replace("{session}", "doc1")
        routes += [(method.upper(), concrete) for method in methods]
    return routes


def test_every_route_and_unknown_path_needs_the_token(token_server):
    routes = served_routes(token_server.base_url)
    assert len(routes) >= 12
    bad = (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}{TOKEN}"},
    )
    for method, path in routes:
        for headers in bad:
            response = httpx.request(method, token_server.base_url + path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            # Unknown routes answer 401 too: a stranger learns nothing about the API.
    with token_server.client(token=TOKEN) as http:
        created = http.post("/v1/jobs", files=job_files(job_params()))
        assert created.status_code == 202
        assert wait_job(http, created.json()["id"])["state"] == "done"


def test_token_compare_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(backend.api.auth.hmac, "compare_digest", recording)
    for guess in (TOKEN, TOKEN[:3], TOKEN + "x", "x" * len(TOKEN)):
        assert backend.api.auth.token_matches(f"Bearer {guess}", TOKEN) == (guess == TOKEN)
    # Every guess, right or wrong, whatever its length, went through hmac.compare_digest.
    assert len(calls) == 4


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "myhost.lan"])
def test_non_loopback_bind_needs_a_token(host):
    with pytest.raises(SettingsError, match="without a token"):
        Settings(host=host).check()
    with pytest.raises(SettingsError, match="token"):
        Settings(host=host, token="short").check()
    Settings(host=host, token=TOKEN).check()


def test_serve_command_refuses_lan_bind_without_token():
    result = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to start without a token" in result.stderr


def test_no_cors_even_with_the_token(token_server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    origin = {**auth, "Origin": "https://evil.example"}
    preflight = httpx.options(
        token_server.base_url + "/v1/jobs",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (403, 404, 405)
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    for path in ("/v1/health", "/v1/models", "/openapi.json"):
        response = httpx.get(token_server.base_url + path, headers=auth)
        assert response.status_code == 200
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_web_pages_cannot_drive_a_local_server(tmp_path):
    """CSRF: a page's multipart POST needs no preflight; DNS rebinding: a page whose own
    name resolves to 127.0.0.1. Both would run jobs on a token-less local backend."""
    engine = FakeEngine()
    with serve_app(make_settings(tmp_path), engine) as server, server.client() as http:
        files = job_files(job_params())
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Host": "evil.example:7860"},
            {"Host": "127.0.0.1.evil.example"},
        ):
            response = http.post("/v1/jobs", files=files, headers=headers)
            assert response.status_code == 403, (headers, response.text)
            assert response.json()["error"]["code"] == "forbidden_origin"
            assert http.get("/v1/models", headers=headers).status_code == 403
        assert http.get("/v1/health").json()["queue_length"] == 0
        assert engine.generated == 0  # nothing ran
        port = server.base_url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "127.0.0.5"):
            assert http.get("/v1/health", headers={"Host": host}).status_code == 200, host
        created = http.post("/v1/jobs", files=files, headers={"Sec-Fetch-Site": "none"})
        assert created.status_code == 202  # typed into the address bar: not a web page
        assert wait_job(http, created.json()["id"])["state"] == "done"


def test_lan_server_with_token_serves_any_host_name(tmp_path):
    settings = make_settings(tmp_path, host="0.0.0.0", token=TOKEN)
    with serve_app(settings, FakeEngine()) as server, server.client(token=TOKEN) as http:
        assert (
            http.get("/v1/health", headers={"Host": "gpu-box.studio.lan:7860"}).status_code == 200
        )
        assert (
            http.get("/v1/health", headers={"Origin": "http://gpu-box.studio.lan"}).status_code
            == 403
        )


def test_no_directory_listing_or_file_serving(token_server, tmp_path):
    with token_server.client(token=TOKEN) as http:
        info = wait_job(http, http.post("/v1/jobs", files=job_files(job_params())).json()["id"])
        name = os.path.basename(info["results"][0]["file"])
        for path in (
            "/",
            "/v1/",
            "/v1/jobs",
            "/outputs/",
            f"/outputs/{name}",
            f"/{name}",
            "/docs",
            "/redoc",
            "/static/",
            "/v1/jobs/../../etc/passwd",
        ):
            response = http.get(path)
            assert response.status_code in (404, 405), (path, response.status_code)
            assert b"<html" not in response.content.lower()


# --- rate limit ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_and_caps():
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token every 0.5 s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    clock.now += 100  # refills only up to the burst
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_token_bucket_table_is_bounded_and_checked():
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=100)
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert buckets.clients() == 100
    for bad, named in (
        ({"rate": 0, "burst": 1}, "rate"),
        ({"rate": float("nan"), "burst": 1}, "rate"),
        ({"rate": 1, "burst": 0.5}, "burst"),
        ({"rate": 1, "burst": float("inf")}, "burst"),
    ):
        with pytest.raises(RateLimitError, match=named):
            TokenBuckets(**bad)
    with pytest.raises(SettingsError, match="rate_limit_per_s"):
        Settings(rate_limit_per_s=-1).check()


def test_rate_limit_answers_429_with_retry_after_per_client(tmp_path):
    settings = make_settings(
        tmp_path, token=TOKEN, rate_limit_per_s=0.5, rate_limit_burst=5, rate_limit_loopback=True
    )
    with serve_app(settings, FakeEngine()) as server:
        url = server.base_url + "/v1/health"
        good = {"Authorization": f"Bearer {TOKEN}"}
        # Wrong-token guesses use up the bucket too: brute force is throttled.
        with httpx.Client() as http:
            guesses = [http.get(url, headers={"Authorization": "Bearer guess"}) for _ in range(5)]
            limited = http.get(url, headers=good)
        assert [r.status_code for r in guesses] == [401] * 5
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # Another client address (127.0.0.2 is loopback too) has its own bucket.
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, headers=good) as other:
            try:
                assert other.get(url).status_code == 200
            except httpx.ConnectError:
                pytest.skip("cannot bind 127.0.0.2 as a source address here")
        time.sleep(float(limited.headers["Retry-After"]))
        assert httpx.get(url, headers=good).status_code == 200  # allowed again after waiting


def test_loopback_is_exempt_by_default(tmp_path):
    settings = make_settings(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=2)
    with serve_app(settings, FakeEngine()) as server, server.client() as http:
        assert {http.get("/v1/health").status_code for _ in range(50)} == {200}


# --- TLS through the real serve command ----------------------------------------------------


def make_cert(folder) -> tuple[str, str]:
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            key,
            "-out",
            cert,
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_token_through_the_serve_command(tmp_path):
    cert, key = make_cert(tmp_path)
    port = free_port()
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps({"output_dir": str(tmp_path / "out"), "tiny_dir": str(tmp_path / "tiny")})
    )
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ssl-certfile",
        cert,
        "--ssl-keyfile",
        key,
        "--config",
        str(config),
        "--model",
        "tiny",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DIFFUSION_LAYERS_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "serve", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(verify=cert, timeout=5) as https:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                try:
                    response = https.get(
                        base + "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "TLS server did not start"
                    time.sleep(0.2)
            assert response.status_code == 200 and response.json()["protocol"] == 1
            assert https.get(base + "/v1/health").status_code == 401
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by clients
            httpx.get(base + "/v1/health", timeout=5)
        plain = None
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
        except httpx.TransportError:
            pass  # the TLS socket hangs up on plain HTTP: also fine
        assert plain is None or plain.status_code == 400  # never served in clear text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- pickle checkpoints ---------------------------------------------------------------------


class _Payload:
    """Loading this pickle would create ``path``: a stand-in for arbitrary code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_checkpoints_need_the_explicit_flag(tmp_path):
    try:
        from backend.engine.engine import Engine
        from backend.engine.types import EngineConfig
    except Exception as exc:
        pytest.skip(f"!!! REAL ENGINE NOT IMPORTABLE, pickle test SKIPPED: {exc}")
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "lora").mkdir()
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"state_dict": _Payload(str(marker))})
    (models / "checkpoints" / "evil.ckpt").write_bytes(evil)
    (models / "lora" / "evil.pt").write_bytes(evil)
    config = EngineConfig(models_dir=str(models), tiny_dir=str(tmp_path / "tiny"), device="cpu")
    with serve_app(make_settings(tmp_path), Engine(config)) as server, server.client() as http:
        listed = http.get("/v1/models").json()
        assert "evil" not in [c["name"] for c in listed["checkpoints"]]
        assert "evil" not in [lo["name"] for lo in listed["loras"]]
        for params in (
            job_params(model="evil"),
            job_params(model="tiny", loras=[{"name": "evil"}]),
        ):
            response = http.post("/v1/jobs", files=job_files(params))
            assert response.status_code == 404, response.text
    assert not marker.exists()
    config.allow_pickle = True
    with serve_app(make_settings(tmp_path), Engine(config)) as server, server.client() as http:
        listed = http.get("/v1/models").json()
        assert "evil" in [c["name"] for c in listed["checkpoints"]]  # only with the flag
    assert not marker.exists()
