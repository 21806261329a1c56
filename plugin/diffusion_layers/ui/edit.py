"""The docker's "Edit" toggle (edit by instruction, edit_request.py) and its "Layers" section
(Decompose into Layers, decompose_flow.py)."""

from __future__ import annotations

from typing import Optional

from ..controller import Controller
from ..model_capabilities import for_model
from ..protocol import MAX_LAYERS, MIN_LAYERS
from .flow_box import FlowBox
from .qt_widgets import QCheckBox, QFormLayout, QSpinBox, QWidget

EDIT_TIP = (
    "Edit by instruction: the prompt says what to change ('make the jacket red'). The "
    "selection (with some context around it) or the whole canvas is the picture edited; "
    "<layer:Name> in the prompt adds that layer as a reference image."
)
DECOMPOSE_TIP = (
    "Split the canvas (or the selection) into this many RGBA layers, returned as one group "
    "above the active layer: bottom layer first. One Undo removes the group."
)


def edit_toggle(controller: Controller, parent: Optional[QWidget] = None) -> QCheckBox:
    """'Edit' (settings.edit): shown when the chosen checkpoint can edit, and while it is on
    (so that it can be turned off after picking a model that cannot: the mode line says why)."""
    box = QCheckBox("Edit", parent)
    box.setToolTip(EDIT_TIP)
    box.clicked.connect(lambda on: controller.update_settings(edit=bool(on)))

    def show() -> None:  # follows the settings and the chosen checkpoint
        s = controller.settings
        can = for_model(controller.connection.models, s.model).edit is not None
        try:
            box.setChecked(s.edit)
            box.setVisible(can or s.edit)
        except RuntimeError:  # its docker went with a closed window: stop following
            controller.changed.disconnect(show)

    controller.changed.connect(show)
    show()
    return box


class DecomposeBox(FlowBox):
    """Layers (2..8, the checkpoint's default first); Decompose / Cancel, progress, message.
    Greyed out, with a tooltip saying why, when no checkpoint on the server can decompose."""

    def __init__(self, controller: Controller, parent: Optional[QWidget] = None) -> None:
        super().__init__("Layers", controller.decompose, "Decompose into Layers", parent)
        self.controller = controller
        form = QFormLayout(self)
        self.count = QSpinBox()
        self.count.setRange(MIN_LAYERS, MAX_LAYERS)
        self.count.valueChanged.connect(self.flow.set_layer_count)
        form.addRow("Layers", self.count)
        self.add_flow_rows(form)
        controller.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        flow = self.flow
        try:
            span = flow.checkpoint()[1]
            why = flow.unavailable()
            self.count.blockSignals(True)
            if span is not None:
                self.count.setRange(span.min, span.max)
            self.count.setValue(flow.layer_count())
            self.count.blockSignals(False)
        except RuntimeError:  # its docker went with a closed window: stop following
            self.controller.changed.disconnect(self.refresh)
            return
        for widget in (self.count, self.run):
            widget.setToolTip(why or DECOMPOSE_TIP)
        self.count.setEnabled(why is None and not flow.busy)
        self.show_flow(can_run=why is None)
