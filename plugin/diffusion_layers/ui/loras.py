"""LoRAs from the server's list, each with a weight."""

from __future__ import annotations

from typing import List

from ..protocol import MAX_LORAS
from ..qt import pyqtSignal
from ..settings import LoraChoice
from .qt_widgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class LoraList(QWidget):
    edited = pyqtSignal(object)  # List[LoraChoice]

    def __init__(self, parent: "QWidget | None" = None) -> None:
        super().__init__(parent)
        self._loras: List[LoraChoice] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.available = QComboBox()
        self.available.setToolTip("LoRAs the server offers")
        self.add_button = QPushButton("Add LoRA")
        self.add_button.clicked.connect(self._add)
        row.addWidget(self.available, 1)
        row.addWidget(self.add_button)
        layout.addLayout(row)
        self.rows = QVBoxLayout()
        layout.addLayout(self.rows)

    def set_available(self, names: List[str]) -> None:
        current = self.available.currentText()
        self.available.blockSignals(True)
        self.available.clear()
        self.available.addItems(names)
        if current in names:
            self.available.setCurrentText(current)
        self.available.blockSignals(False)
        self.add_button.setEnabled(bool(names))

    def set_loras(self, loras: List[LoraChoice]) -> None:
        if [(lo.name, lo.weight) for lo in loras] == [(lo.name, lo.weight) for lo in self._loras]:
            return
        self._loras = [LoraChoice(lo.name, lo.weight) for lo in loras]
        while self.rows.count():
            item = self.rows.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for index, lora in enumerate(self._loras):
            self.rows.addWidget(self._row(index, lora))

    def _row(self, index: int, lora: LoraChoice) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(lora.name), 1)
        weight = QDoubleSpinBox()
        weight.setRange(-4.0, 4.0)
        weight.setSingleStep(0.05)
        weight.setValue(lora.weight)
        weight.valueChanged.connect(lambda v, i=index: self._weight(i, v))
        layout.addWidget(weight)
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda _c=False, i=index: self._remove(i))
        layout.addWidget(remove)
        return row

    def _add(self) -> None:
        name = self.available.currentText()
        if name and len(self._loras) < MAX_LORAS:
            self.edited.emit(self._loras + [LoraChoice(name, 1.0)])

    def _weight(self, index: int, value: float) -> None:
        self._loras[index].weight = value
        self.edited.emit([LoraChoice(lo.name, lo.weight) for lo in self._loras])

    def _remove(self, index: int) -> None:
        self.edited.emit([lo for i, lo in enumerate(self._loras) if i != index])
