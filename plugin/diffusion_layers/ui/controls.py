"""Control layers: add any layer as a control, set type/strength/range, remove, preprocess."""

from __future__ import annotations

from typing import List

from ..protocol import CONTROL_TYPES, MAX_CONTROLS, REFERENCE_TYPES
from ..qt import pyqtSignal
from ..settings import ControlLayer
from .qt_widgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

TYPE_LABELS = {
    "scribble": "Scribble",
    "lineart": "Line art",
    "softedge": "Soft edge",
    "canny": "Canny edges",
    "depth": "Depth",
    "normal": "Normal map",
    "pose": "Pose",
    "tile": "Tile",
    "reference": "Reference (content)",
    "style": "Reference (style)",
    "composition": "Reference (composition)",
    "face": "Reference (face)",
}


def _spin(low: float, high: float, value: float, step: float = 0.05) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin


class ControlList(QWidget):
    edited = pyqtSignal(object)  # List[ControlLayer]
    preprocess = pyqtSignal(str, str)  # control type, layer (uniqueId, else name)
    add_active = pyqtSignal()

    def __init__(self, parent: "QWidget | None" = None) -> None:
        super().__init__(parent)
        self._controls: List[ControlLayer] = []
        self._labels: List[str] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton("Add active layer as control")
        self.add_button.clicked.connect(self.add_active)
        layout.addWidget(self.add_button)
        self.rows = QVBoxLayout()
        layout.addLayout(self.rows)

    def set_controls(self, controls: List[ControlLayer], labels: List[str]) -> None:
        """One row per control; ``labels`` name each one's layer (marked when deleted)."""
        same = [c.__dict__ for c in controls] == [c.__dict__ for c in self._controls]
        if same and labels == self._labels:
            return
        self._controls = [ControlLayer(**c.__dict__) for c in controls]
        self._labels = list(labels)
        while self.rows.count():
            item = self.rows.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for index, control in enumerate(self._controls):
            label = self._labels[index] if index < len(self._labels) else control.layer
            self.rows.addWidget(self._row(index, control, label))
        self.add_button.setEnabled(len(self._controls) < MAX_CONTROLS)

    def _row(self, index: int, control: ControlLayer, label: str) -> QWidget:
        row = QWidget()
        grid = QGridLayout(row)
        grid.setContentsMargins(0, 2, 0, 2)
        grid.addWidget(QLabel(label), 0, 0, 1, 2)
        kind = QComboBox()
        for name in CONTROL_TYPES:
            kind.addItem(TYPE_LABELS[name], name)
        kind.setCurrentIndex(CONTROL_TYPES.index(control.type))
        kind.currentIndexChanged.connect(lambda i, n=index: self._set(n, "type", CONTROL_TYPES[i]))
        grid.addWidget(kind, 0, 2)
        strength = _spin(0.0, 2.0, control.strength)
        strength.setPrefix("weight " if control.type in REFERENCE_TYPES else "strength ")
        strength.valueChanged.connect(lambda v, n=index: self._set(n, "strength", v))
        start = _spin(0.0, 1.0, control.start)
        start.setPrefix("start ")
        start.valueChanged.connect(lambda v, n=index: self._set(n, "start", v))
        end = _spin(0.0, 1.0, control.end)
        end.setPrefix("end ")
        end.valueChanged.connect(lambda v, n=index: self._set(n, "end", v))
        buttons = QHBoxLayout()
        pre = QPushButton("Preprocess to layer")
        pre.setEnabled(control.type not in REFERENCE_TYPES)  # a reference is used as it is
        pre.clicked.connect(
            lambda _c=False, n=index: self.preprocess.emit(
                self._controls[n].type, self._controls[n].ref
            )
        )
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda _c=False, n=index: self._remove(n))
        buttons.addWidget(pre)
        buttons.addWidget(remove)
        grid.addWidget(strength, 1, 0)
        grid.addWidget(start, 1, 1)
        grid.addWidget(end, 1, 2)
        grid.addLayout(buttons, 2, 0, 1, 3)
        return row

    def _set(self, index: int, key: str, value: object) -> None:
        setattr(self._controls[index], key, value)
        if self._controls[index].start > self._controls[index].end:
            return  # wait until the range is valid again
        self.edited.emit([ControlLayer(**c.__dict__) for c in self._controls])

    def _remove(self, index: int) -> None:
        self.edited.emit([c for i, c in enumerate(self._controls) if i != index])
