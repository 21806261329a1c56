"""The one module that picks the Qt binding: PyQt5 (Krita 5.x) or PyQt6 (Krita 6).

Every other plugin module imports its Qt names from here (widgets: ``ui/qt_widgets.py``). The
choice (:func:`choose_major`), in order:

1. the environment variable ``DIFFUSION_LAYERS_QT`` (``5`` or ``6``; tests use it);
2. inside Krita, ``pykrita.qt_major_version()`` (Krita 5.3 and 6 expose it);
3. a binding the host has already imported (Krita imports its own before any plugin);
4. the first binding that imports: inside Krita (``pykrita`` importable) PyQt5 then PyQt6, so
   a Krita 5 never picks up a PyQt6 that happens to be installed on the system; outside Krita
   PyQt6 then PyQt5. Steps 3 and 4 use the same order.

Only names that mean the same in both bindings are exported, and code is written in the subset
both accept: fully scoped enums (``QImage.Format.Format_ARGB32``), ``exec()``, ``bytes(...)``
of ``QByteArray.data()``, ``voidptr.asstring(n)`` for image bits.

A binding that cannot be loaded raises :class:`QtBindingError` (an ``ImportError``) whose
message is one sentence an artist can act on; ``startup.py`` shows it in the docker.

Pyright checks the plugin once per binding: ``QT6`` is a ``defineConstant`` in the two
configurations (``pyproject.toml``: false, ``pyrightconfig.qt6.json``: true), so each run reads
only its own branch below.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Callable, Collection, Mapping, Optional

ENV_VAR = "DIFFUSION_LAYERS_QT"
MAJORS = (5, 6)


class QtBindingError(ImportError):
    """No usable Qt binding; the message is one sentence for the artist."""


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _pykrita() -> Optional[ModuleType]:
    """Krita's embedded ``pykrita`` module (present in every Krita 5/6), None outside Krita."""
    try:
        return importlib.import_module("pykrita")
    except ImportError:
        return None


def choose_major(
    environ: Mapping[str, str],
    pykrita: Optional[ModuleType],
    loaded: Collection[str],
    importable: Callable[[str], bool] = _importable,
) -> int:
    """The Qt major version to use (5 or 6); see the module docstring for the rule.

    Args:
        environ: the process environment (``DIFFUSION_LAYERS_QT``).
        pykrita: Krita's ``pykrita`` module, or None outside Krita.
        loaded: names of modules already imported (``sys.modules``).
        importable: tells whether a module imports.

    Raises:
        QtBindingError: ``DIFFUSION_LAYERS_QT`` holds something other than 5 or 6.
    """
    wanted = environ.get(ENV_VAR, "").strip()
    if wanted:
        if wanted not in ("5", "6"):
            raise QtBindingError(
                f"The environment variable {ENV_VAR} is {wanted!r}; set it to 5 (PyQt5) or"
                " 6 (PyQt6), or remove it."
            )
        return int(wanted)
    if pykrita is not None:
        report = getattr(pykrita, "qt_major_version", None)
        if callable(report):
            try:
                major = int(report())  # type: ignore[arg-type]
            except (TypeError, ValueError):
                major = 0
            if major in MAJORS:
                return major
    order = (5, 6) if pykrita is not None else (6, 5)
    for major in order:
        if f"PyQt{major}.QtCore" in loaded:
            return major
    for major in order:
        if importable(f"PyQt{major}.QtCore"):
            return major
    return order[0]


QT_MAJOR = choose_major(os.environ, _pykrita(), set(sys.modules))
QT6 = QT_MAJOR == 6
BINDING = f"PyQt{QT_MAJOR}"

try:
    if not QT6:
        from PyQt5.QtCore import (
            PYQT_VERSION_STR,
            QT_VERSION_STR,
            QBuffer,
            QByteArray,
            QCoreApplication,
            QIODevice,
            QObject,
            QRect,
            QRunnable,
            QSize,
            Qt,
            QThreadPool,
            QTimer,
            QUrl,
            pyqtSignal,
        )
        from PyQt5.QtGui import (
            QHideEvent,
            QIcon,
            QImage,
            QKeySequence,
            QPainter,
            QPixmap,
            QShowEvent,
        )
        from PyQt5.QtNetwork import (
            QHttpMultiPart,
            QHttpPart,
            QNetworkAccessManager,
            QNetworkReply,
            QNetworkRequest,
        )
    else:
        from PyQt6.QtCore import (
            PYQT_VERSION_STR,
            QT_VERSION_STR,
            QBuffer,
            QByteArray,
            QCoreApplication,
            QIODevice,
            QObject,
            QRect,
            QRunnable,
            QSize,
            Qt,
            QThreadPool,
            QTimer,
            QUrl,
            pyqtSignal,
        )
        from PyQt6.QtGui import (
            QHideEvent,
            QIcon,
            QImage,
            QKeySequence,
            QPainter,
            QPixmap,
            QShowEvent,
        )
        from PyQt6.QtNetwork import (
            QHttpMultiPart,
            QHttpPart,
            QNetworkAccessManager,
            QNetworkReply,
            QNetworkRequest,
        )
except ImportError as exc:
    raise QtBindingError(
        f"Diffusion Layers could not load {BINDING} ({exc}); install the {BINDING} that"
        f" matches this Krita, or set {ENV_VAR} to the other binding."
    ) from exc

__all__ = [
    "BINDING",
    "ENV_VAR",
    "PYQT_VERSION_STR",
    "QT6",
    "QT_MAJOR",
    "QT_VERSION_STR",
    "QBuffer",
    "QByteArray",
    "QCoreApplication",
    "QHideEvent",
    "QHttpMultiPart",
    "QHttpPart",
    "QIODevice",
    "QIcon",
    "QImage",
    "QKeySequence",
    "QNetworkAccessManager",
    "QNetworkReply",
    "QNetworkRequest",
    "QObject",
    "QPainter",
    "QPixmap",
    "QRect",
    "QRunnable",
    "QShowEvent",
    "QSize",
    "Qt",
    "QThreadPool",
    "QTimer",
    "QUrl",
    "QtBindingError",
    "choose_major",
    "pyqtSignal",
]
