"""The docker shows only what the chosen model supports (model_capabilities.py): the negative
prompt and CFG are hidden for models without them, live painting, control layers, LoRAs and
Upscale are greyed out with a tooltip naming why, and so is Generate when the mode the canvas
asks for is one the model lacks (the mode line then says why), or Edit is on for a model
that cannot edit (the line names the checkpoints that can)."""

from __future__ import annotations

from typing import Any, Optional

from ..errors import PluginError
from ..geometry import GeometryError
from ..model_capabilities import Capabilities, ability_refusal, for_model
from ..planning import plan_job

LIVE_TIP = "Live painting: re-render the canvas after every stroke"


def capabilities_of(panel: Any) -> Capabilities:
    controller = panel.controller
    return for_model(controller.connection.models, controller.settings.model)


def _show_row(form: Any, widget: Any, visible: bool) -> None:
    widget.setVisible(visible)
    label = form.labelForField(widget)
    if label is not None:
        label.setVisible(visible)


def _grey(widget: Any, reason: Optional[str], tip: str = "") -> None:
    widget.setEnabled(reason is None)
    widget.setToolTip(reason or tip)


def show_capabilities(panel: Any) -> Capabilities:
    """Hide or grey out the docker's widgets for the chosen model; returns its capabilities."""
    capabilities = capabilities_of(panel)
    form = panel.advanced.form
    _show_row(form, panel.negative, capabilities.negative_prompt)
    _show_row(form, panel.cfg, capabilities.cfg)
    live_off = capabilities.feature_refusal("live")
    edit = capabilities.edit
    if panel.controller.settings.edit and edit is not None and not edit.live:
        live_off = f"{capabilities.who()} is not fast enough for live edits: turn Edit off."
    if panel.live_toggle.isChecked():
        live_off = None  # a running loop can always be stopped
    _grey(panel.live_toggle, live_off, LIVE_TIP)
    _grey(panel.controls, capabilities.feature_refusal("controlnet"))
    _grey(panel.loras, capabilities.feature_refusal("loras"))
    upscale = getattr(panel, "upscale", None)
    if upscale is not None:
        _grey(upscale, capabilities.mode_refusal("upscale"))
    return capabilities


def current_mode(controller: Any) -> Optional[str]:
    """The protocol mode Generate would run now, None when it cannot run at all."""
    doc = controller.canvas.active_document()
    if doc is None:
        return None
    try:
        return plan_job(doc, controller.settings, read_controls=False).choice.mode
    except (PluginError, GeometryError):
        return None


def show_mode_support(panel: Any) -> None:
    """Grey out Generate (and say why on the mode line) when the model lacks the mode the
    canvas asks for. Plans only for models that lack some mode (no cost otherwise)."""
    capabilities = capabilities_of(panel)
    refusal = None
    settings, models = panel.controller.settings, panel.controller.connection.models
    if settings.edit:  # the Edit toggle: the chosen checkpoint must edit (names those that can)
        refusal = ability_refusal(models, settings.model, "edit")
    elif any(capabilities.mode_refusal(mode) for mode in ("txt2img", "img2img", "inpaint")):
        mode = current_mode(panel.controller)
        refusal = None if mode is None else capabilities.mode_refusal(mode)
    if refusal is not None:
        panel.mode.setText(refusal)
        panel.generate.setEnabled(False)
    panel.generate.setToolTip(refusal or "")
