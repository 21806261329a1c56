"""Plugin tests: the plugin package and the fake ``krita`` module on sys.path, offscreen Qt."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for path in (HERE / "fake_krita", ROOT / "plugin"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import krita  # noqa: E402  (the fake)
from PyQt5.QtWidgets import QApplication  # noqa: E402


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    app = QApplication.instance() or QApplication(["plugin-tests"])
    return app  # type: ignore[return-value]


@pytest.fixture
def fake_krita(qapp: QApplication) -> Iterator[krita.Krita]:
    yield krita.Krita.reset()
    krita.Krita.reset()
