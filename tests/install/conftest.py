"""A fake Hugging Face Hub on loopback for the downloader and ``models`` command tests.

``/<repo>/resolve/<rev>/<file>`` answers like the Hub: a 302 to ``/cdn/<file>`` carrying
``X-Linked-Etag: "<sha256>"``. ``/cdn/<file>`` and ``/plain/<file>`` serve bytes with Range
support. Faults are switched on per test: drop the connection after N bytes, ignore Range,
publish a wrong hash, answer with an error status.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class HubState:
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content
    drop_after: dict[str, list[int]] = field(
        default_factory=dict
    )  # name -> byte counts, one per request
    ignore_range: bool = False
    wrong_etag: bool = False
    status: dict[str, int] = field(default_factory=dict)  # name -> forced HTTP error
    redirect_host: str = "127.0.0.1"  # host the resolve URL redirects to
    auto_content: bool = False  # serve any unknown name with bytes derived from the name
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def content(self, name: str) -> bytes | None:
        if name in self.files:
            return self.files[name]
        if self.auto_content:
            seed = hashlib.sha256(name.encode()).digest()
            return seed * 2000  # 64 KB, distinct per file
        return None


class FakeHub:
    def __init__(self, server: ThreadingHTTPServer, state: HubState) -> None:
        self.server = server
        self.state = state
        self.port = server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def add(self, name: str, content: bytes) -> str:
        self.state.files[name] = content
        return hashlib.sha256(content).hexdigest()

    def plain_url(self, name: str) -> str:
        return f"{self.endpoint}/plain/{name}"

    def resolve_url(self, name: str, repo: str = "owner/repo") -> str:
        return f"{self.endpoint}/{repo}/resolve/main/{name}"

    def requests_for(self, prefix: str) -> list[dict]:
        return [r for r in self.state.requests if r["path"].startswith(prefix)]


def _make_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def do_GET(self) -> None:
            with state.lock:
                state.requests.append(
                    {
                        "path": self.path,
                        "range": self.headers.get("Range"),
                        "authorization": self.headers.get("Authorization"),
                        "host": self.headers.get("Host"),
                    }
                )
            resolve = re.match(r"^/[^/]+/[^/]+/resolve/[^/]+/(.+)$", self.path)
            if resolve:
                self._redirect(resolve.group(1))
            elif self.path.startswith(("/cdn/", "/plain/")):
                self._serve(self.path.split("/", 2)[2])
            else:
                self._error(404)

        def _error(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _redirect(self, name: str) -> None:
            content = state.content(name)
            if name in state.status:
                self._error(state.status[name])
                return
            if content is None:
                self._error(404)
                return
            digest = hashlib.sha256(b"not it" if state.wrong_etag else content).hexdigest()
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", f"http://{state.redirect_host}:{port}/cdn/{name}")
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(content)))
            self.send_header("ETag", '"0123456789abcdef0123456789abcdef01234567"')  # git sha1
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, name: str) -> None:
            content = state.content(name)
            if name in state.status:
                self._error(state.status[name])
                return
            if content is None:
                self._error(404)
                return
            start = 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(content):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(content)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}"
                )
            else:
                self.send_response(200)
            body = content[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with state.lock:
                drops = state.drop_after.get(name) or []
                cut = drops.pop(0) if drops else None
            if cut is not None and cut < len(body):
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # drop mid-file, as a flaky network would
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    state = HubState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
    )
    thread.start()
    try:
        yield FakeHub(server, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
