"""Engine refusals raised below the code that knows a control's index get the index."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engine.controlnet import prepare_controls
from backend.engine.errors import InvalidRequest
from backend.engine.types import ControlInput, ControlNetEntry


class Models:
    """Resolves every control to one entry; the ControlNet itself is never needed here."""

    def resolve_controlnet(self, family, control_type, name=None, field="controls[0]"):
        return ControlNetEntry("cn", family, "any", "unused")

    def controlnet(self, name):
        return object()


def test_a_preprocessor_refusal_names_the_controls_index() -> None:
    image = np.zeros((16, 16, 4), np.uint8)
    controls = [ControlInput("canny", image), ControlInput("depth", image)]  # no depth model
    with pytest.raises(InvalidRequest) as info:
        prepare_controls(Models(), "sd15", controls, lambda rgb: rgb, depth_estimator=None)
    assert info.value.field == "controls[1].preprocess"
    assert info.value.message.startswith("controls[1].preprocess=True: ")


def test_at_keeps_fields_without_a_list_item() -> None:
    error = InvalidRequest("controls[].threshold", 2.0, "expected 0 < threshold < 1")
    assert error.at("controls[3]").field == "controls[3].threshold"
    assert InvalidRequest("image", None, "x").at("controls[3]").field == "image"
