"""Each Krita installation names itself to the server with a stable ``X-Client-Id`` (its own
lane in the fair queue on loopback without tokens; backend/api/clients.py), on both bindings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import krita
import pytest
from diffusion_layers.settings import CLIENT_ID_KEY, GROUP, DictStore, installation_id
from plugin_helpers import wait_until


class _Recording(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Recording.seen.append((self.path, self.headers.get("X-Client-Id")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[str]:
    _Recording.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _sent_ids(app: object, paths: list[str]) -> list[str | None]:
    """Fetch ``paths`` through the plugin's own client; the X-Client-Id the server saw."""
    client = app.controller.client  # type: ignore[attr-defined]
    got: list[bytes] = []
    errors: list[object] = []
    _Recording.seen = []
    for path in paths:
        client.fetch(path, got.append, errors.append)
    wait_until(lambda: len(got) + len(errors) == len(paths), what="the answers")
    assert not errors and sorted(p for p, _ in _Recording.seen) == sorted(paths)
    return [client_id for _, client_id in _Recording.seen]


def test_the_plugin_sends_one_id_per_installation_kept_across_restarts(
    fake_krita: krita.Krita, recording_server: str
) -> None:
    from diffusion_layers.extension import PluginApp

    fake_krita.writeSetting(GROUP, "server_url", recording_server)
    first = _sent_ids(PluginApp(), ["/a", "/b"])
    stored = fake_krita.readSetting(GROUP, CLIENT_ID_KEY, "")
    assert len(stored) == 32 and first == [stored, stored]
    # Krita restarted: the same settings, the same id.
    assert _sent_ids(PluginApp(), ["/c"]) == [stored]
    # Another installation (fresh settings): another id.
    krita.Krita.reset().writeSetting(GROUP, "server_url", recording_server)
    other = _sent_ids(PluginApp(), ["/d"])
    assert other[0] is not None and len(other[0]) == 32 and other[0] != stored


def test_a_missing_or_malformed_id_is_replaced_and_kept() -> None:
    store = DictStore({CLIENT_ID_KEY: "not an id\x07"})
    made = installation_id(store)
    assert made != "not an id\x07" and store.values[CLIENT_ID_KEY] == made
    assert int(made, 16) >= 0 and len(made) == 32 and made == made.lower()
    assert installation_id(store) == made
    empty = DictStore()
    assert installation_id(empty) not in ("", made)
