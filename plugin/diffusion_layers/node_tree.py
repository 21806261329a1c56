"""Krita's layer tree, read: find nodes by uniqueId, the layer behind a mask, where a new layer
goes, and the plugin's temporary ``[Preview]``/``[Live]`` layers.

No ``krita`` import: the functions take libkis ``Node`` objects (krita_adapter passes them in),
so the rules are testable with the fake ``krita`` module.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from .live import LIVE_PREFIX
from .placement import PREVIEW_PREFIX

TEMPORARY_PREFIXES = (PREVIEW_PREFIX, LIVE_PREFIX)

#: What an artist calls each node type (Krita's ``Node.type()``) in a sentence.
KIND_WORDS = {
    "transparencymask": "a transparency mask",
    "filtermask": "a filter mask",
    "transformmask": "a transform mask",
    "selectionmask": "a selection mask",
    "colorizemask": "a colorize mask",
}


def node_id(node: Any) -> str:
    return str(node.uniqueId().toString())


def is_mask(node: Any) -> bool:
    return str(node.type()).endswith("mask")


def is_temporary(node: Any) -> bool:
    """A plugin preview, or a copy of one (Krita names a duplicate "Copy of [Preview] …")."""
    name = str(node.name())
    return any(prefix in name for prefix in TEMPORARY_PREFIXES)


def walk(node: Any) -> Iterator[Any]:
    """Every node below ``node``, depth first, bottom to top within a parent."""
    for child in node.childNodes():
        yield child
        yield from walk(child)


def find(root: Any, ref: str) -> Optional[Any]:
    """The node with uniqueId ``ref`` or, when no node has that id, the first layer (not mask)
    named ``ref``, else the first whose name is ``ref`` but for spaces around it (a layer named
    "Mug " answers to ``<layer:Mug>``: tags are read without those spaces)."""
    if not ref:
        return None
    named = trimmed = None
    for node in walk(root):
        if node_id(node) == ref:
            return node
        name = str(node.name())
        if is_mask(node):
            continue
        if named is None and name == ref:
            named = node
        if trimmed is None and name.strip() == ref.strip():
            trimmed = node
    if ref.startswith("{"):
        return None
    return named if named is not None else trimmed


def parent_of(node: Any, root: Any) -> Optional[Any]:
    """The node's parent, or None for the root and for a node that is not in the tree."""
    parent = node.parentNode()
    if parent is None or not str(parent.uniqueId().toString()).strip("{}0-"):
        return None
    return parent


def is_root(node: Optional[Any], root: Any) -> bool:
    return node is None or node_id(node) == node_id(root)


def layer_of(node: Any, root: Any) -> Any:
    """The layer a mask belongs to (walking up), or the node itself when it is a layer."""
    while is_mask(node):
        parent = parent_of(node, root)
        if parent is None or is_root(parent, root):
            break
        node = parent
    return node


def hidden_by(node: Any, root: Any) -> Optional[Any]:
    """The node itself or the group above it that is hidden, or None when it shows."""
    current: Optional[Any] = node
    while current is not None and not is_root(current, root):
        if not current.visible():
            return current
        current = parent_of(current, root)
    return None


def anchor(root: Any, active: Optional[Any]) -> Tuple[Any, Optional[Any]]:
    """(parent, sibling) so that a new layer lands directly above the active node's layer.

    Masks lead to their layer; a plugin ``[Preview]``/``[Live]`` layer to the artist's layer
    below it; a layer inside a locked group to above the outermost locked group (Krita keeps
    locked groups closed). Without an active node the new layer goes on top of the image."""
    if active is None or is_root(active, root):
        return root, None
    node = layer_of(active, root)
    if is_root(node, root) or is_mask(node):
        return root, None
    parent = parent_of(node, root) or root
    if is_temporary(node):
        siblings = parent.childNodes()
        ids = [node_id(n) for n in siblings]
        index = ids.index(node_id(node)) if node_id(node) in ids else len(siblings)
        below = [n for n in siblings[:index] if not is_temporary(n) and not is_mask(n)]
        if below:
            node = below[-1]
        elif not is_root(parent, root):
            node, parent = parent, parent_of(parent, root) or root
        else:
            return root, None
    outer = node
    current = parent_of(node, root)
    while current is not None and not is_root(current, root):
        if current.locked():
            outer = current
        current = parent_of(current, root)
    return (parent_of(outer, root) or root), outer


def replace(root: Any, old: Any, node: Any, add: Callable[[Any, Any, Any], Any]) -> None:
    """``node`` where ``old`` is, ``old`` out; ``add(parent, above, node)`` adds (and checks).

    ``old`` is removed first, so adding ``node`` is the last undo step: one Ctrl+Z after Apply
    takes the applied layer and never brings a superseded preview back. Krita adds a layer
    only above a sibling or on top, so an ``old`` at the bottom of its group is replaced just
    above the layer that is then the lowest."""
    parent = parent_of(old, root) or root
    siblings = parent.childNodes()
    index = [node_id(n) for n in siblings].index(node_id(old))
    rest = siblings[:index] + siblings[index + 1 :]
    above = rest[index - 1] if index > 0 else (rest[0] if rest else None)
    old.remove()
    add(parent, above, node)


def temporary_nodes(root: Any, prefix: str) -> List[Any]:
    return [n for n in walk(root) if str(n.name()).startswith(prefix)]


def contains(root: Any, key: str) -> bool:
    return by_id(root, key) is not None


def by_id(root: Any, key: str) -> Optional[Any]:
    return next((n for n in walk(root) if node_id(n) == key), None) if key else None


def strays(root: Any, keep: Sequence[str], keep_live: bool) -> List[Any]:
    """Temporary layers (and copies of them) not in ``keep``; ``[Live]`` ones kept while live
    mode runs on the document."""
    return [
        n
        for n in walk(root)
        if is_temporary(n)
        and node_id(n) not in keep
        and not (keep_live and LIVE_PREFIX in str(n.name()))
    ]
