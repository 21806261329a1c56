"""Assertions on the driver's recorded data (layers, offsets, pixels), shared by the tests."""

from __future__ import annotations

LAYER_TYPES = ("paintlayer", "grouplayer")


def new_layers(data: dict) -> list[dict]:
    return [node for node in data["new"] if node["type"] in LAYER_TYPES]


def single_new_layer(data: dict) -> dict:
    layers = new_layers(data)
    assert len(layers) == 1, f"expected exactly one new layer, got {[n['name'] for n in layers]}"
    assert not layers[0]["name"].startswith("[Preview]"), layers[0]["name"]
    return layers[0]


def by_id(snapshot: list[dict]) -> dict[str, dict]:
    return {node["id"]: node for node in snapshot}


def assert_above_active(data: dict, layer: dict) -> None:
    """``layer`` sits directly above the layer that was active when generation started."""
    active = by_id(data["after"]).get(data["active_before"])
    assert active is not None, "the active layer disappeared"
    assert layer["parent_id"] == active["parent_id"], (layer["parent"], active["parent"])
    assert layer["index"] == active["index"] + 1, (
        f"new layer at index {layer['index']}, active {active['name']!r} at {active['index']}"
    )


def assert_originals_untouched(before: list[dict], after: list[dict]) -> None:
    """Every layer that existed before is still there with bit-identical pixels."""
    now = by_id(after)
    for node in before:
        if node["type"] not in LAYER_TYPES:
            continue
        assert node["id"] in now, f"layer {node['name']!r} vanished"
        assert now[node["id"]]["pixels"]["sha1"] == node["pixels"]["sha1"], (
            f"layer {node['name']!r} pixels changed"
        )


def assert_no_previews(snapshot: list[dict]) -> None:
    left = [n["name"] for n in snapshot if n["name"].startswith("[Preview]")]
    assert not left, f"preview layers left behind: {left}"


def assert_covers(layer: dict, width: int, height: int) -> None:
    """The layer is fully opaque over the whole canvas and is not a flat colour."""
    pixels = layer["pixels"]
    assert pixels["opaque"] == width * height, (pixels["opaque"], width * height)
    assert pixels["distinct_red"] > 8 or pixels["distinct_green"] > 8, "flat result"


def inside(box: list[int], outer: list[int]) -> bool:
    x, y, w, h = box
    ox, oy, ow, oh = outer
    return ox <= x and oy <= y and x + w <= ox + ow and y + h <= oy + oh


def launch_outputs(backend, run) -> list[dict]:
    """The backend's output files written during this Krita launch."""
    import os

    return [
        entry
        for entry in backend.output_texts()
        if run.started_at - 1 <= os.path.getmtime(entry["file"]) <= run.ended_at + 1
    ]
