"""Reliability and security tests: shared fixtures (tiny real engine, fake engine servers).

The plugin tests here need the fake ``krita`` module and the plugin package on sys.path and
an offscreen Qt, exactly as tests/plugin sets them up. The slow tier (full-length fuzzing and
the 2-minute load run) runs only with ``-m slow`` or DL_RUN_SLOW=1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for path in (ROOT / "tests" / "plugin" / "fake_krita", ROOT / "plugin"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory):
    """The real Engine (tiny model, CPU, loaded once per session), able to inject faults.

    It is ``support.fault_injecting_engine_class()``: the real Engine unless a test arms it.
    """
    from .support import build_tiny_engine, fault_injecting_engine_class

    engine_class = None
    try:
        engine_class = fault_injecting_engine_class()
    except Exception:  # no torch/diffusers: build_tiny_engine skips loudly
        pass
    return build_tiny_engine(tmp_path_factory.mktemp("tiny-models"), engine_class)


@pytest.fixture(scope="session")
def qapp():
    from PyQt5.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["reliability-tests"])


@pytest.fixture
def fake_krita(qapp) -> Iterator[object]:
    import krita  # the fake, from tests/plugin/fake_krita

    yield krita.Krita.reset()
    krita.Krita.reset()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DL_RUN_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow tier: run with -m slow or DL_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(str(HERE)):
            item.add_marker(skip)
