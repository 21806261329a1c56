"""Pure logic: region geometry, mode choice, result placement and layer names."""

from __future__ import annotations

import pytest
from diffusion_layers.errors import ResultMismatch
from diffusion_layers.geometry import (
    GeometryError,
    Rect,
    align,
    canvas_region,
    context_margin,
    mask_bounds,
    selection_region,
)
from diffusion_layers.mode import CanvasFacts, choose_mode
from diffusion_layers.placement import (
    check_result,
    layer_name,
    mask_window,
    preview_name,
    result_rect,
)

CANVAS = Rect(0, 0, 1000, 800)


def test_context_margin_scales_with_selection_and_has_a_floor() -> None:
    assert context_margin(Rect(0, 0, 400, 100)) == 100
    assert context_margin(Rect(0, 0, 10, 10)) == 16
    assert context_margin(Rect(0, 0, 400, 100), 0.5) == 200
    with pytest.raises(GeometryError, match="context"):
        context_margin(Rect(0, 0, 4, 4), 5.0)


def test_selection_region_is_bounds_plus_context_inside_the_canvas() -> None:
    region = selection_region(Rect(400, 300, 200, 100), CANVAS)
    assert region == Rect(350, 250, 304, 200)  # 50 px context, width aligned to 8
    assert CANVAS.contains_rect(region)
    assert region.width % 8 == 0 and region.height % 8 == 0


def test_selection_region_is_clipped_at_the_canvas_edge() -> None:
    region = selection_region(Rect(0, 0, 100, 100), CANVAS)
    assert region.x == 0 and region.y == 0
    assert region == Rect(0, 0, 128, 128)


@pytest.mark.parametrize(
    "selection",
    [Rect(-64, 236, 528, 528), Rect(900, 100, 300, 200), Rect(-10, -10, 1020, 820)],
)
def test_selection_region_never_leaves_the_canvas(selection: Rect) -> None:
    region = selection_region(selection.intersected(CANVAS), CANVAS)
    assert CANVAS.contains_rect(region), region
    with pytest.raises(GeometryError, match="outside the canvas"):
        selection_region(Rect(1100, 900, 50, 50), CANVAS)


def test_mask_bounds_is_the_tight_box_of_selected_pixels() -> None:
    rect = Rect(10, 20, 6, 4)
    mask = bytearray(24)
    mask[1 * 6 + 2] = 5  # (12, 21)
    mask[3 * 6 + 4] = 200  # (14, 23)
    assert mask_bounds(bytes(mask), rect) == Rect(12, 21, 3, 3)
    assert mask_bounds(bytes(mask), rect, threshold=127) == Rect(14, 23, 1, 1)
    assert mask_bounds(bytes(24), rect) is None
    with pytest.raises(GeometryError, match="bytes"):
        mask_bounds(bytes(5), rect)


def test_results_that_do_not_cover_the_region_are_refused() -> None:
    region = Rect(0, 0, 64, 48)
    check_result(region, Rect(0, 0, 64, 48), None)  # exact: fine
    for wrong in (Rect(0, 0, 128, 96), Rect(0, 0, 60, 48), Rect(0, 0, 64, 45), Rect(2, 0, 64, 48)):
        with pytest.raises(ResultMismatch, match="nothing was placed"):
            check_result(region, wrong, None)
    mask = bytearray(64 * 48)
    for y in range(10, 20):
        mask[y * 64 + 8 : y * 64 + 40] = b"\xff" * 32  # selected: (8, 10, 32, 10)
    mask[0] = 3  # a faint speck the server may leave out
    check_result(region, Rect(8, 10, 32, 10), bytes(mask))  # trimmed to the selection: fine
    check_result(region, region, bytes(mask))
    for wrong in (
        Rect(8, 10, 30, 10),
        Rect(8, 12, 32, 8),
        Rect(8, 10, 64, 10),
        Rect(-8, 0, 64, 48),
    ):
        with pytest.raises(ResultMismatch):
            check_result(region, wrong, bytes(mask))


def test_whole_canvas_and_size_limits() -> None:
    assert canvas_region(CANVAS) == CANVAS
    with pytest.raises(GeometryError, match="This image is 4 px wide; .* Resize Canvas"):
        canvas_region(Rect(0, 0, 4, 100))
    with pytest.raises(GeometryError, match="9000x100 px; generation takes at most"):
        canvas_region(Rect(0, 0, 9000, 100))
    with pytest.raises(GeometryError, match="empty"):
        selection_region(Rect(5, 5, 0, 0), CANVAS)


def test_align_never_grows_past_the_bound() -> None:
    assert align(Rect(0, 0, 13, 13), Rect(0, 0, 13, 13)) == Rect(0, 0, 13, 13)
    assert align(Rect(5, 5, 13, 13), Rect(0, 0, 20, 20)) == Rect(4, 4, 16, 16)
    assert align(Rect(0, 0, 13, 13), Rect(0, 0, 14, 14)) == Rect(0, 0, 14, 14)


@pytest.mark.parametrize(
    ("facts", "strength", "mode"),
    [
        (CanvasFacts(False, canvas_empty=True), 1.0, "txt2img"),
        (CanvasFacts(False, canvas_empty=True), 0.5, "txt2img"),
        (CanvasFacts(False), 1.0, "txt2img"),
        (CanvasFacts(False), 0.6, "img2img"),
        (CanvasFacts(True), 1.0, "inpaint"),
        (CanvasFacts(True), 0.4, "inpaint"),
        (CanvasFacts(True, transparent_under_selection=True), 0.5, "outpaint"),
    ],
)
def test_mode_follows_the_canvas(facts: CanvasFacts, strength: float, mode: str) -> None:
    choice = choose_mode(facts, strength)
    assert choice.mode == mode
    assert choice.uses_selection == facts.has_selection
    assert choice.sends_image == (mode != "txt2img")


def test_mode_labels_say_refine_below_full_strength() -> None:
    assert "Refine the selection (40%)" in choose_mode(CanvasFacts(True), 0.4).label
    assert "Refine the whole image (60%)" in choose_mode(CanvasFacts(False), 0.6).label
    with pytest.raises(ValueError, match="strength"):
        choose_mode(CanvasFacts(False), 1.5)


def test_result_offsets_map_to_canvas_positions() -> None:
    region = Rect(-64, 128, 512, 512)
    assert result_rect(region, 0, 0, 512, 512) == region
    placed = result_rect(region, 16, 8, 64, 32)
    assert placed == Rect(-48, 136, 64, 32)
    assert mask_window(region, placed) == Rect(16, 8, 64, 32)
    with pytest.raises(ValueError, match="positive"):
        result_rect(region, 0, 0, 0, 10)


def test_layer_names_come_from_prompt_and_seed() -> None:
    assert layer_name("a red fox, in   the snow", 42) == "a red fox in the snow #42"
    assert layer_name("", 7) == "Generated #7"
    long = layer_name("word " * 40, 1)
    assert len(long) < 60 and long.endswith("#1")
    assert preview_name("cat", 3) == "[Preview] cat #3"


@pytest.mark.parametrize(
    ("prompt", "name"),
    [
        # The QA case: weights dropped, the comment line gone, the wildcard as typed.
        ("a cat (red:1.2), {red|blue}\n# a comment line", "[Preview] a cat red {red|blue} #1234"),
        ("a fox # fluffy, (best:1.4)", "[Preview] a fox #1234"),
        ("<lora:ink_style:0.8> an owl <LYCO:x>", "[Preview] an owl #1234"),
        ("((big)) [dog] (sky: .5 )", "[Preview] big dog sky #1234"),
        (r"a \(literal\) 50\% \#tag # gone", "[Preview] a (literal) 50% #tag #1234"),
        ("# only a comment", "[Preview] Generated #1234"),
        ("({red|{dark|light} blue}:1.3) car", "[Preview] {red|{dark|light} blue} car #1234"),
    ],
)
def test_layer_names_leave_out_prompt_syntax(prompt: str, name: str) -> None:
    assert preview_name(prompt, 1234) == name
    assert layer_name(prompt, 1234) == name.replace("[Preview] ", "")
