"""The docker's "Upscale" section and the "High-resolution pass" choice of normal generation."""

from __future__ import annotations

from typing import Optional

from ..controller import Controller
from ..mode import CanvasFacts, choose_mode, edit_choice
from ..protocol import MAX_UPSCALE_FACTOR, MIN_UPSCALE_FACTOR, ModelsInfo
from ..qt import Qt
from ..upscale_settings import IN_PLACE, NEW_DOCUMENT
from .flow_box import FlowBox
from .qt_widgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QWidget,
)

PLAIN = "Plain resampling"
TARGET_TEXTS = ((NEW_DOCUMENT, "New document"), (IN_PLACE, "Refine in place"))
HIRES_TEXTS = (
    (None, "Server setting"),
    (True, "On"),
    (False, "Off"),
)
#: "Tile size" choices of the refine pass (contract B: 256..2048 px; None = the model's own).
TILE_TEXTS = (
    (None, "Auto (model's native size)"),
    (512, "512 px"),
    (768, "768 px"),
    (1024, "1024 px"),
    (1536, "1536 px"),
    (2048, "2048 px"),
)
TILE_TIP = (
    "The refine pass works tile by tile. Auto uses the model's native size; larger tiles "
    "mean fewer tiles (faster on big areas) but each tile strays further from what the "
    "model was trained on."
)
IN_PLACE_TIP = (
    "Refine in place keeps the size (factor 1) and adds detail to the selection, else to the "
    "active layer, else to the whole canvas: the result comes back as a preview to Apply."
)


#: Up to this many pixels the docker's mode sentence reads the canvas (transparency decides
#: txt2img/outpaint); above, it is told from the selection and strength alone: reading a
#: 3000x2000 canvas on every docker refresh stalled Krita 0.3-2 s at a time.
FULL_MODE_PIXELS = 4_000_000


def mode_sentence(controller: Controller) -> str:
    """What Generate will run, as the docker shows it (Generate itself always reads)."""
    doc = controller.canvas.active_document()
    if doc is None or controller.live.running:
        return controller.mode_preview()
    bounds = doc.bounds()
    if bounds.width * bounds.height <= FULL_MODE_PIXELS:
        return controller.mode_preview()
    try:
        facts = CanvasFacts(has_selection=doc.selection_bounds() is not None)
        if controller.settings.edit:
            return edit_choice(facts.has_selection).label
        return choose_mode(facts, controller.settings.strength).label
    except ValueError as exc:
        return f"Cannot generate: {exc}"


def hires_combo(controller: Controller, parent: Optional[QWidget] = None) -> QComboBox:
    """'High-resolution pass' for txt2img/img2img/inpaint/outpaint (settings.hires)."""
    combo = QComboBox(parent)
    for value, text in HIRES_TEXTS:
        combo.addItem(text, value)
    combo.setToolTip(
        "Regions much larger than the model's native size are generated at native size "
        "first, then brought to full size with a tiled refine pass."
    )

    def picked(index: int) -> None:
        controller.update_settings(hires=HIRES_TEXTS[index][0])

    def show() -> None:  # follows the settings (Reuse settings, another docker)
        values = [v for v, _ in HIRES_TEXTS]
        try:
            combo.setCurrentIndex(values.index(controller.settings.hires))
        except RuntimeError:  # its docker went with a closed window: stop following
            controller.changed.disconnect(show)

    combo.activated.connect(picked)
    controller.changed.connect(show)
    show()
    return combo


def tile_index(tile_size: Optional[int]) -> int:
    """The Tile size entry for ``tile_size``; a stored size not in the list shows as Auto's
    neighbour it is nearest to (never an index out of range)."""
    values = [v for v, _ in TILE_TEXTS]
    if tile_size in values:
        return values.index(tile_size)
    sizes = [v for v in values if v is not None]
    return values.index(min(sizes, key=lambda v: abs(v - tile_size))) if tile_size else 0


class UpscaleBox(FlowBox):
    """Factor, model, Refine detail + strength, target; Upscale / Cancel, progress, message."""

    def __init__(self, controller: Controller, parent: Optional[QWidget] = None) -> None:
        super().__init__("Upscale", controller.upscale, "Upscale", parent)
        self.controller = controller
        form = QFormLayout(self)
        self.factor = QDoubleSpinBox()
        self.factor.setRange(MIN_UPSCALE_FACTOR, MAX_UPSCALE_FACTOR)
        self.factor.setDecimals(2)
        self.factor.setSingleStep(0.25)
        self.factor.setPrefix("x")
        self.factor.valueChanged.connect(lambda v: self.flow.update(factor=round(v, 2)))
        self.model = QComboBox()
        self.model.activated.connect(
            lambda _i: self.flow.update(model=self.model.currentData() or "")
        )
        self.refine = QCheckBox("Refine detail")
        self.refine.setToolTip("A tiled diffusion pass over the scaled picture, with the prompt.")
        self.refine.toggled.connect(lambda on: self.flow.update(refine=bool(on)))
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0, 100)
        self.strength_label = QLabel()
        self.strength.valueChanged.connect(lambda v: self.flow.update(strength=v / 100.0))
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.refine)
        strength_row.addWidget(self.strength, 1)
        strength_row.addWidget(self.strength_label)
        self.target = QComboBox()
        for value, text in TARGET_TEXTS:
            self.target.addItem(text, value)
        self.target.setToolTip(IN_PLACE_TIP)
        self.target.activated.connect(lambda _i: self.flow.update(target=self.target.currentData()))
        self.tile = QComboBox()
        for value, text in TILE_TEXTS:
            self.tile.addItem(text, value)
        self.tile.setToolTip(TILE_TIP)
        self.tile.activated.connect(lambda i: self.flow.update(tile_size=TILE_TEXTS[i][0]))
        form.addRow("Factor", self.factor)
        form.addRow("Model", self.model)
        form.addRow(strength_row)
        form.addRow("Target", self.target)
        form.addRow("Tile size", self.tile)
        self.add_flow_rows(form)
        self.flow.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        s = self.flow.settings
        widgets = (self.factor, self.model, self.refine, self.strength, self.target, self.tile)
        for widget in widgets:
            widget.blockSignals(True)
        in_place = s.target == IN_PLACE
        self.factor.setValue(1.0 if in_place else s.factor)
        self.factor.setEnabled(not in_place)
        self.refine.setChecked(s.refine or in_place)
        self.refine.setEnabled(not in_place)
        self.strength.setValue(round(s.strength * 100))
        self.strength_label.setText(f"{round(s.strength * 100)}%")
        self.target.setCurrentIndex(max(0, self.target.findData(s.target)))
        self.tile.setCurrentIndex(tile_index(s.tile_size))
        self.tile.setEnabled(s.refine or in_place)
        self.fill_models(self.controller.connection.models)
        for widget in widgets:
            widget.blockSignals(False)
        self.show_flow()

    def fill_models(self, models: Optional[ModelsInfo]) -> None:
        """'Plain resampling' + the server's upscalers; unusable ones disabled, with why."""
        wanted = self.flow.settings.model
        self.model.clear()
        self.model.addItem(PLAIN, "")
        for info in models.upscalers if models is not None else []:
            self.model.addItem(f"{info.name} (x{info.scale})", info.name)
            index = self.model.count() - 1
            if info.problem:
                item = self.model.model().item(index)  # type: ignore[union-attr]
                if item is not None:
                    item.setEnabled(False)
                self.model.setItemData(index, info.problem, Qt.ItemDataRole.ToolTipRole)
        if wanted and self.model.findData(wanted) < 0:
            self.model.addItem(f"{wanted} (not on server)", wanted)
        self.model.setCurrentIndex(max(0, self.model.findData(wanted)))
