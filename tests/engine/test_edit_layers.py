"""Modes "edit" and "layers" through the real ``Engine`` with test families whose edit and
decompose do real pixel work (edit_family.py): placement, alpha, offsets, references,
composite_error, progress, and the submit-time refusals."""

from __future__ import annotations

import numpy as np
import pytest
from edit_family import (  # noqa: F401  (edit_families is a fixture)
    COMPOSITE_OFFSET,
    DECOMPOSE_CALLS,
    EDIT_CALLS,
    FakeModels,
    edit_families,
)

from backend.engine.compositing import flatten
from backend.engine.decompose import composite_error
from backend.engine.engine import Engine
from backend.engine.errors import EngineError, InvalidRequest
from backend.engine.types import (
    ControlInput,
    EngineConfig,
    GenerationRequest,
    InpaintSettings,
    Progress,
)

W, H = 96, 64
pytestmark = pytest.mark.usefixtures("edit_families")


def engine(names: dict[str, str] | None = None) -> Engine:
    return Engine(EngineConfig(device="cpu", dtype="float32"), models=FakeModels(names))


def region() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    image = np.empty((H, W, 4), np.uint8)
    image[..., 0] = 40 + xx * 2
    image[..., 1] = 30 + yy * 3
    image[..., 2] = 90
    image[..., 3] = 255
    return image


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.where((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r, 255, 0).astype(np.uint8)


def request(mode: str = "edit", **changes: object) -> GenerationRequest:
    values: dict = {
        "mode": mode,
        "width": W,
        "height": H,
        "prompt": "make it negative",
        "model": f"{mode if mode == 'edit' else 'layers'}-test",
        "image": region(),
        "steps": 2,
        "seed": 5,
    }
    values.update(changes)
    return GenerationRequest(**values)


def reference(width: int = 40, height: int = 30, model: str | None = None) -> ControlInput:
    image = np.zeros((height, width, 4), np.uint8)
    image[..., 0] = 200
    image[: height // 2, :, 3] = 255  # the bottom half transparent: white for the family
    return ControlInput("reference", image, model=model)


def refused(engine_: Engine, req: GenerationRequest) -> EngineError:
    with pytest.raises(EngineError) as caught:
        engine_.check_request(req)
    return caught.value


# -- edit ---------------------------------------------------------------------------------


def test_edit_without_a_selection_is_an_opaque_layer_over_the_region() -> None:
    steps: list[Progress] = []
    layers = engine().generate(request(batch=2), steps.append)
    assert [layer.seed for layer in layers] == [5, 6]
    call = EDIT_CALLS[0]
    assert call.seeds == [5, 6] and call.mask is None and call.references == []
    assert (call.width, call.height) == (call.image.shape[1], call.image.shape[0])
    assert call.width % 8 == 0 and call.height % 8 == 0
    for layer in layers:
        assert (layer.x, layer.y, layer.width, layer.height) == (0, 0, W, H)
        assert (layer.image[..., 3] == 255).all()
        # inverted (up to the resize to the family's size and back)
        diff = np.abs(layer.image[..., :3].astype(int) - (255 - region()[..., :3].astype(int)))
        assert diff.mean() < 3
        assert layer.metadata.mode == "edit" and layer.metadata.layer_index is None
    assert [p.step for p in steps] == [1, 2] and {p.total for p in steps} == {4}


def test_edit_of_a_selection_is_placed_like_inpaint_and_transparent_outside() -> None:
    mask = disc(60, 30, 14)
    req = request(mask=mask, inpaint=InpaintSettings(color_match=False, feather=0))
    (layer,) = engine().generate(req)
    ys, xs = np.nonzero(mask)
    assert (layer.x, layer.y) == (xs.min(), ys.min())
    assert (layer.width, layer.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    placed = mask[layer.y : layer.y + layer.height, layer.x : layer.x + layer.width]
    alpha = layer.image[..., 3]
    assert (alpha[placed == 0] == 0).all()  # transparent outside the disc
    assert (alpha[placed == 255] == 255).all()  # the real alpha: a disc, not a box
    inside = placed == 255
    source = region()[layer.y : layer.y + layer.height, layer.x : layer.x + layer.width]
    diff = np.abs(layer.image[..., :3][inside].astype(int) - (255 - source[..., :3][inside]))
    assert diff.mean() < 4
    # the family saw the selection (1 = may change) at its own size, with context around it
    call = EDIT_CALLS[0]
    assert call.mask is not None and call.mask.shape == (call.height, call.width)
    assert 0 < float(call.mask.mean()) < 1


def test_edit_colour_match_pulls_the_result_towards_the_surroundings() -> None:
    mask = disc(60, 30, 14)
    plain = request(mask=mask, inpaint=InpaintSettings(color_match=False))
    matched = request(mask=mask, inpaint=InpaintSettings(color_match=True))
    (a,), (b,) = engine().generate(plain), engine().generate(matched)
    assert (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height)
    assert not np.array_equal(a.image, b.image)


def test_edit_references_reach_the_family_at_their_own_size_over_white() -> None:
    engine().generate(request(controls=[reference(40, 30)]))
    (ref,) = EDIT_CALLS[0].references
    assert ref.shape == (30, 40, 3) and ref.dtype == np.uint8
    assert (ref[:15, :, 0] == 200).all() and (ref[15:] == 255).all()


def test_edit_refusals_name_the_field_and_what_can() -> None:
    e = engine()
    error = refused(e, request(model="plain-test"))
    assert error.field == "model" and "edit-test" in str(error) and "plain-test" in str(error)
    none = engine({"plain-test": "sd15", "edit-test": "test_edit"})
    none.config.default_model = "plain-test"
    error = refused(none, request(model=None))
    assert error.field == "mode" and "edit-test" in str(error)
    error = refused(e, request(controls=[reference(), reference()]))
    assert error.field == "controls" and "at most 1 reference image" in str(error)
    depth = ControlInput("depth", np.zeros((H, W, 4), np.uint8))
    assert refused(e, request(controls=[depth])).field == "controls[0].type"
    adapter = reference(model="ip-adapter_sd15.safetensors")
    assert refused(e, request(controls=[adapter])).field == "controls[0].model"
    empty = np.zeros((H, W), np.uint8)
    assert refused(e, request(mask=empty)).field == "mask"
    assert refused(e, request(layers=3)).field == "layers"


def test_edit_on_a_model_of_no_editing_family_names_the_families_that_can() -> None:
    only = engine({"plain-test": "sd15"})
    error = refused(only, request(model="plain-test"))
    assert error.field == "model" and "TestEdit" in str(error)


# -- layers -------------------------------------------------------------------------------


def composite(layers: list) -> np.ndarray:
    canvas = np.zeros((H, W, 4), np.uint8)
    for layer in layers:
        canvas = flatten(canvas, layer.image, layer.x, layer.y)
    return canvas


def test_layers_split_the_region_into_n_layers_that_composite_back() -> None:
    steps: list[Progress] = []
    layers = engine().generate(request("layers", layers=3), steps.append)
    assert len(layers) == 3 and DECOMPOSE_CALLS[0].layers == 3
    for index, layer in enumerate(layers):
        assert (layer.x, layer.y, layer.width, layer.height) == (0, 0, W, H)
        meta = layer.metadata
        assert (meta.layer_index, meta.layers, meta.composite_error) == (index, 3, 0.0)
        assert layer.seed == 5 and meta.mode == "layers"
    assert (layers[0].image[..., 3] == 255).all()  # the bottom layer is the backdrop
    upper = layers[2].image[..., 3]
    assert (upper == 0).any() and (upper > 0).any()  # real alpha, not a rectangle
    diff = np.abs(composite(layers)[..., :3].astype(int) - region()[..., :3].astype(int))
    assert diff.mean() < 3
    assert [p.step for p in steps] == [1, 2] and {p.total for p in steps} == {2}
    assert engine().planned_steps(request("layers", layers=3)) == 2


def test_layers_of_a_selection_are_cropped_to_it_and_cut_by_it() -> None:
    mask = disc(40, 30, 12)
    layers = engine().generate(request("layers", mask=mask))  # the family's default: 3
    ys, xs = np.nonzero(mask)
    assert len(layers) == 3
    for layer in layers:
        assert (layer.x, layer.y) == (xs.min(), ys.min())
        assert (layer.width, layer.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        placed = mask[layer.y : layer.y + layer.height, layer.x : layer.x + layer.width]
        assert (layer.image[..., 3][placed == 0] == 0).all()
    assert (layers[0].image[..., 3][placed == 255] == 255).all()


def test_layers_report_how_far_the_composite_is_from_the_models_own() -> None:
    COMPOSITE_OFFSET["value"] = 10
    layers = engine().generate(request("layers", layers=2))
    assert {layer.metadata.composite_error for layer in layers} == {10.0}
    red = np.zeros((2, 2, 4), np.uint8)
    red[..., 0], red[..., 3] = 200, 255
    half = red.copy()
    half[..., 3] = 0
    assert composite_error([red, half], np.zeros((2, 2, 3), np.uint8)) == pytest.approx(200 / 3)


def test_layers_source_alpha_is_kept() -> None:
    image = region()
    image[:, : W // 2, 3] = 0
    layers = engine().generate(request("layers", image=image, layers=2))
    assert all((layer.image[:, : W // 2, 3] == 0).all() for layer in layers)


def test_layers_refusals_name_the_field() -> None:
    e = engine()
    error = refused(e, request("layers", model="edit-test"))
    assert error.field == "model" and "layers-test" in str(error)
    for count in (1, 6):
        error = refused(e, request("layers", layers=count))
        assert error.field == "layers" and "2..5" in str(error)
    assert refused(e, request("layers", batch=2)).field == "batch"
    control = ControlInput("canny", np.zeros((H, W, 4), np.uint8))
    assert refused(e, request("layers", controls=[control])).field == "controls[0].type"
    txt = request("txt2img", model="plain-test", image=None, layers=3)
    assert isinstance(refused(e, txt), InvalidRequest) and refused(e, txt).field == "layers"


def test_capabilities_and_modes_of_the_test_families() -> None:
    from edit_family import EDIT_FAMILY, LAYERS_FAMILY

    assert LAYERS_FAMILY.modes() == ("layers",)
    assert "edit" in EDIT_FAMILY.modes()
    assert EDIT_FAMILY.capabilities()["edit"] == {"max_references": 1, "live": True}
    assert LAYERS_FAMILY.capabilities()["layers"] == {"min": 2, "max": 5, "default": 3}
