"""The one module that picks the Qt binding: PyQt5 (Krita 5.x) or PyQt6 (Krita 6).

Every other plugin module imports its Qt names from here. The choice, in order:

1. the environment variable ``DIFFUSION_LAYERS_QT`` (``5`` or ``6``; tests use it);
2. inside Krita, ``pykrita.qt_major_version()`` (Krita 5.3 and 6 expose it; a Krita without it
   is a Qt 5 build);
3. outside Krita, PyQt6 when it imports, otherwise PyQt5.

Only names that mean the same in both bindings are exported; code is written in the subset both
accept (fully scoped enums, ``exec()``).
"""

from __future__ import annotations

import importlib
import os
import sys

ENV_VAR = "DIFFUSION_LAYERS_QT"


def _has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def choose_major() -> int:
    """The Qt major version to use (5 or 6); see the module docstring for the rule.

    Raises:
        ImportError: ``DIFFUSION_LAYERS_QT`` holds something other than 5 or 6.
    """
    wanted = os.environ.get(ENV_VAR, "").strip()
    if wanted:
        if wanted not in ("5", "6"):
            raise ImportError(f"{ENV_VAR}={wanted!r}: use 5 (PyQt5) or 6 (PyQt6)")
        return int(wanted)
    if "krita" in sys.modules or _has_module("pykrita"):
        try:
            pykrita = importlib.import_module("pykrita")
            return int(pykrita.qt_major_version())
        except (ImportError, AttributeError):
            return 5
    return 6 if _has_module("PyQt6") else 5


QT_MAJOR = choose_major()
QT6 = QT_MAJOR == 6

if not QT6:
    from PyQt5.QtCore import (
        QBuffer,
        QByteArray,
        QIODevice,
        QObject,
        QRect,
        QSize,
        Qt,
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
    from PyQt6.QtCore import (  # type: ignore[no-redef]
        QBuffer,
        QByteArray,
        QIODevice,
        QObject,
        QRect,
        QSize,
        Qt,
        QTimer,
        QUrl,
        pyqtSignal,
    )
    from PyQt6.QtGui import (  # type: ignore[no-redef]
        QHideEvent,
        QIcon,
        QImage,
        QKeySequence,
        QPainter,
        QPixmap,
        QShowEvent,
    )
    from PyQt6.QtNetwork import (  # type: ignore[no-redef]
        QHttpMultiPart,
        QHttpPart,
        QNetworkAccessManager,
        QNetworkReply,
        QNetworkRequest,
    )

__all__ = [
    "QT6",
    "QT_MAJOR",
    "QBuffer",
    "QByteArray",
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
    "QShowEvent",
    "QSize",
    "Qt",
    "QTimer",
    "QUrl",
    "pyqtSignal",
]
