"""The plugin's protocol mirror and backend/protocol.py parse the same fixtures identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffusion_layers import protocol as plugin_protocol

backend_protocol = pytest.importorskip("backend.protocol")
backend_models = pytest.importorskip("backend.protocol_models")


def backend_class(name: str):
    """A contract model of backend/protocol.py or backend/protocol_models.py."""
    return getattr(backend_protocol, name, None) or getattr(backend_models, name)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "protocol"
CASES = [
    ("job_params_full.json", "JobParams"),
    ("job_info_done.json", "JobInfo"),
    ("job_info_failed.json", "JobInfo"),
    ("health.json", "Health"),
    ("models.json", "ModelsInfo"),
    ("error_response.json", "ErrorResponse"),
    ("progress_event.json", "ProgressEvent"),
    ("job_params_upscale.json", "JobParams"),
    ("models_upscalers.json", "ModelsInfo"),
    ("models_capabilities.json", "ModelsInfo"),
    ("job_params_layers.json", "JobParams"),
    ("job_info_layers.json", "JobInfo"),
    ("models_edit_layers.json", "ModelsInfo"),
]


@pytest.mark.parametrize(("name", "cls"), CASES)
def test_both_sides_parse_the_fixture_identically(name: str, cls: str) -> None:
    text = (FIXTURES / name).read_text()
    data = json.loads(text)
    plugin_obj = getattr(plugin_protocol, cls).from_json(text)
    backend_obj = backend_class(cls).model_validate_json(text)
    assert plugin_obj.to_dict() == data
    assert backend_obj.model_dump(mode="json") == data
    # What the plugin writes, the backend reads back to the same thing (and vice versa).
    assert backend_class(cls).model_validate_json(plugin_obj.to_json()) == backend_obj
    assert getattr(plugin_protocol, cls).from_json(backend_obj.model_dump_json()) == plugin_obj


def test_plugin_defaults_match_backend_defaults() -> None:
    minimal = {"mode": "txt2img", "width": 64, "height": 64}
    plugin_dump = plugin_protocol.JobParams.from_dict(minimal).to_dict()
    backend_dump = backend_protocol.JobParams.model_validate(minimal).model_dump(mode="json")
    assert plugin_dump == backend_dump
    assert plugin_protocol.ModelsInfo().to_dict() == backend_models.ModelsInfo().model_dump(
        mode="json"
    )


def test_field_sets_match_for_every_model() -> None:
    for cls in [
        "ControlParams",
        "LoraParams",
        "InpaintOptions",
        "UpscaleParams",
        "UpscalerInfo",
        "JobParams",
        "ErrorInfo",
        "JobCreated",
        "ResultInfo",
        "JobInfo",
        "Health",
        "CheckpointInfo",
        "ControlNetInfo",
        "VaeInfo",
        "LoraInfo",
        "ModelsInfo",
        "PreprocessParams",
        "ProgressEvent",
    ]:
        plugin_fields = set(getattr(plugin_protocol, cls).__dataclass_fields__)
        backend_fields = set(backend_class(cls).model_fields)
        assert plugin_fields == backend_fields, cls
    assert plugin_protocol.PROTOCOL_VERSION == backend_protocol.PROTOCOL_VERSION
    assert plugin_protocol.RAW_BGRA == backend_protocol.RAW_BGRA
    assert plugin_protocol.RAW_GRAY == backend_protocol.RAW_GRAY
    assert tuple(plugin_protocol.CONTROL_TYPES) == tuple(backend_protocol.CONTROL_TYPES)


def test_malformed_server_answers_raise_protocol_error() -> None:
    with pytest.raises(plugin_protocol.ProtocolError, match="invalid JSON"):
        plugin_protocol.Health.from_json("{not json")
    with pytest.raises(plugin_protocol.ProtocolError, match="expected bool"):
        plugin_protocol.Health.from_json(
            '{"status":"ok","ready":"yes","version":"1","device":"cpu","dtype":"f"}'
        )
    with pytest.raises(plugin_protocol.ProtocolError, match="JobInfo"):
        plugin_protocol.JobInfo.from_json('{"id": "x"}')
    # Unknown fields from a newer server are ignored.
    health = plugin_protocol.Health.from_json(
        '{"status":"ok","ready":true,"version":"1","device":"cpu","dtype":"f","future":1}'
    )
    assert health.ready is True


@pytest.mark.parametrize(
    ("cls", "minimal"),
    [
        ("JobParams", {"mode": "img2img"}),
        ("PreprocessParams", {"type": "canny"}),
        ("LiveParams", {}),
    ],
)
def test_sizes_may_be_left_out_on_both_sides(cls: str, minimal: dict) -> None:
    """width/height: null = the image file's own size (the plugin itself always sends both)."""
    plugin_dump = getattr(plugin_protocol, cls).from_dict(minimal).to_dict()
    backend_dump = backend_class(cls).model_validate(minimal).model_dump(mode="json")
    assert plugin_dump == backend_dump
    assert plugin_dump["width"] is None and plugin_dump["height"] is None
