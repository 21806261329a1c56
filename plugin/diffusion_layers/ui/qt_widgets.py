"""Qt widget classes for the docker, from the binding :mod:`..qt` chose (widgets live only in ui/).

``QAction`` lives in QtWidgets in Qt 5 and in QtGui in Qt 6: import it from here either way.
A failing import raises :class:`..qt.QtBindingError`, as :mod:`..qt` does.
"""

from __future__ import annotations

from ..qt import BINDING, ENV_VAR, QT6, QtBindingError

try:
    if not QT6:
        from PyQt5.QtWidgets import (
            QAction,
            QApplication,
            QCheckBox,
            QComboBox,
            QDockWidget,
            QDoubleSpinBox,
            QFormLayout,
            QGridLayout,
            QGroupBox,
            QHBoxLayout,
            QInputDialog,
            QLabel,
            QLineEdit,
            QListView,
            QListWidget,
            QListWidgetItem,
            QMessageBox,
            QPlainTextEdit,
            QProgressBar,
            QPushButton,
            QScrollArea,
            QSlider,
            QSpinBox,
            QToolButton,
            QVBoxLayout,
            QWidget,
        )
    else:
        from PyQt6.QtGui import QAction
        from PyQt6.QtWidgets import (
            QApplication,
            QCheckBox,
            QComboBox,
            QDockWidget,
            QDoubleSpinBox,
            QFormLayout,
            QGridLayout,
            QGroupBox,
            QHBoxLayout,
            QInputDialog,
            QLabel,
            QLineEdit,
            QListView,
            QListWidget,
            QListWidgetItem,
            QMessageBox,
            QPlainTextEdit,
            QProgressBar,
            QPushButton,
            QScrollArea,
            QSlider,
            QSpinBox,
            QToolButton,
            QVBoxLayout,
            QWidget,
        )
except ImportError as exc:
    raise QtBindingError(
        f"Diffusion Layers could not load {BINDING}'s widgets ({exc}); install the {BINDING}"
        f" that matches this Krita, or set {ENV_VAR} to the other binding."
    ) from exc

__all__ = [
    "QAction",
    "QApplication",
    "QCheckBox",
    "QComboBox",
    "QDockWidget",
    "QDoubleSpinBox",
    "QFormLayout",
    "QGridLayout",
    "QGroupBox",
    "QHBoxLayout",
    "QInputDialog",
    "QLabel",
    "QLineEdit",
    "QListView",
    "QListWidget",
    "QListWidgetItem",
    "QMessageBox",
    "QPlainTextEdit",
    "QProgressBar",
    "QPushButton",
    "QScrollArea",
    "QSlider",
    "QSpinBox",
    "QToolButton",
    "QVBoxLayout",
    "QWidget",
]
