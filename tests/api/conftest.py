from __future__ import annotations

import pytest

from backend.settings import Settings

from .fake_engine import FakeEngine
from .harness import serve_app


def make_settings(tmp_path, **overrides) -> Settings:
    values = {"output_dir": str(tmp_path / "outputs"), "keepalive_s": 0.2, "log_progress": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(tmp_path, fake_engine):
    """A fresh in-process server (real HTTP on loopback) around a FakeEngine."""
    with serve_app(make_settings(tmp_path), fake_engine) as running:
        yield running


@pytest.fixture
def client(server):
    with server.client() as http:
        yield http


def pytest_collection_modifyitems(config, items):
    """The slow soak tier runs only when asked for: ``-m slow`` or DL_RUN_SLOW=1."""
    import os

    if os.environ.get("DL_RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow tier: run with -m slow or DL_RUN_SLOW=1")
    here = os.path.dirname(__file__)
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(here):
            item.add_marker(skip)
