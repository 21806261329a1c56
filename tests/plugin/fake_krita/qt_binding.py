"""The Qt binding for the plugin tests and the fake ``krita``: the plugin's own choice.

``plugin/diffusion_layers/qt.py`` is loaded here on its own, by path (importing it as
``diffusion_layers.qt`` would run the package's ``__init__`` and register the plugin before the
tests set Krita up). Its choice is then pinned in ``DIFFUSION_LAYERS_QT`` so the plugin, imported
later, makes the same one. Tests pick a binding with ``DIFFUSION_LAYERS_QT=5`` or ``=6``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

QT_PY = Path(__file__).resolve().parents[3] / "plugin" / "diffusion_layers" / "qt.py"


def _load_plugin_qt() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_diffusion_layers_qt_for_tests", QT_PY)
    assert spec is not None and spec.loader is not None, f"cannot load {QT_PY}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin_qt = _load_plugin_qt()
QT_MAJOR: int = plugin_qt.QT_MAJOR
BINDING: str = plugin_qt.BINDING
os.environ[plugin_qt.ENV_VAR] = str(QT_MAJOR)

QtCore = importlib.import_module(f"{BINDING}.QtCore")
QtGui = importlib.import_module(f"{BINDING}.QtGui")
QtWidgets = importlib.import_module(f"{BINDING}.QtWidgets")
QAction = QtGui.QAction if QT_MAJOR == 6 else QtWidgets.QAction
# What the fake krita uses (the real `krita` module re-exports every Qt class too).
QByteArray, QObject, QRect, QUuid = QtCore.QByteArray, QtCore.QObject, QtCore.QRect, QtCore.QUuid
QImage, QPainter = QtGui.QImage, QtGui.QPainter
QDockWidget, QLabel = QtWidgets.QDockWidget, QtWidgets.QLabel
Qt = QtCore.Qt
