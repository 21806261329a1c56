"""QA3 fixes, fast. Reference layers by name (node_tree.find): spaces around a name do not
count, an exact name wins, masks are never found by name. Reuse settings on a layer with nothing
stored is a sentence naming it (results.reuse)."""

from __future__ import annotations

import pytest
from diffusion_layers import node_tree


class Id:
    def __init__(self, text: str) -> None:
        self.text = text

    def toString(self) -> str:  # noqa: N802 (Krita's QUuid)
        return self.text


class Node:
    def __init__(self, name: str, kind: str = "paintlayer", children: tuple = ()) -> None:
        self._name, self._kind, self._children = name, kind, list(children)
        self._id = Id("{" + f"{abs(hash((name, kind, id(self)))):032x}"[:32] + "}")

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return self._kind

    def uniqueId(self) -> Id:  # noqa: N802
        return self._id

    def childNodes(self) -> list:  # noqa: N802
        return self._children


def test_a_name_with_spaces_around_it_answers_to_the_stripped_name():
    mug = Node("Mug ")
    root = Node("root", "grouplayer", (Node("Background"), mug))
    assert node_tree.find(root, "Mug") is mug
    assert node_tree.find(root, " Mug  ") is mug


def test_an_exact_name_wins_and_masks_are_not_found_by_name():
    spaced, exact = Node("Cup "), Node("Cup")
    mask = Node("Ink", "transparencymask")
    root = Node("root", "grouplayer", (spaced, exact, Node("Layer", children=(mask,))))
    assert node_tree.find(root, "Cup") is exact
    assert node_tree.find(root, "Ink") is None
    assert node_tree.find(root, "Nope") is None
    assert node_tree.find(root, node_tree.node_id(mask)) is mask


class Doc:
    """The few CanvasDocument calls results.reuse makes: nothing stored for any layer."""

    def read_annotation(self, kind: str) -> bytes:
        return b""

    def active_layer_id(self) -> str:
        return "{active}"

    def layer_name(self, ref: str) -> str | None:
        return {"{active}": "Layer 1 of 2"}.get(ref)


def test_reuse_on_a_layer_with_nothing_stored_is_a_sentence_naming_it():
    from diffusion_layers import results
    from diffusion_layers.errors import NoDocument, PluginError

    with pytest.raises(PluginError, match="'Layer 1 of 2' has no stored settings"):
        results.reuse(Doc())  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="That layer has no stored settings"):
        results.reuse(Doc(), "{gone}")  # type: ignore[arg-type]
    with pytest.raises(NoDocument):
        results.reuse(None)
