"""Read-only measurements of Krita documents: node trees, pixel statistics, annotations.

Everything here runs inside Krita's own Python (standard library + PyQt5, no numpy), so pixel
statistics use bytes operations that run at C speed (slicing, count, hashlib).
"""

from __future__ import annotations

import hashlib
import json

from PyQt5.QtWidgets import (
    QAbstractButton,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)


def node_id(node) -> str:
    """A node's uniqueId as a bare lowercase UUID (no braces)."""
    return node.uniqueId().toString().strip("{}").lower()


def walk(node, depth: int = 0):
    """Yield (node, parent, depth) for every node under ``node`` (not ``node`` itself)."""
    for child in node.childNodes():
        yield child, node, depth
        yield from walk(child, depth + 1)


def alpha_bbox(alpha: bytes, width: int, height: int) -> list[int] | None:
    """Bounding box [x, y, w, h] of non-zero alpha, or None when fully transparent."""
    top = bottom = None
    left, right = width, -1
    for row in range(height):
        line = alpha[row * width : (row + 1) * width]
        if line.count(0) == width:
            continue
        top = row if top is None else top
        bottom = row
        left = min(left, width - len(line.lstrip(b"\x00")))
        right = max(right, len(line.rstrip(b"\x00")) - 1)
    if top is None or bottom is None:
        return None
    return [left, top, right - left + 1, bottom - top + 1]


def pixel_stats(data: bytes, width: int, height: int) -> dict:
    """Statistics of BGRA bytes: checksum, coverage, channel means, variety."""
    alpha = data[3::4]
    count = width * height
    opaque = alpha.count(255)
    transparent = alpha.count(0)
    bbox = alpha_bbox(alpha, width, height)
    means = [round(sum(data[c::4]) / count, 3) if count else 0.0 for c in (2, 1, 0, 3)]
    return {
        "sha1": hashlib.sha1(data).hexdigest(),
        "width": width,
        "height": height,
        "opaque": opaque,
        "transparent": transparent,
        "alpha_bbox": bbox,
        "mean_rgba": means,
        "distinct_red": len(set(data[2::4])),
        "distinct_green": len(set(data[1::4])),
    }


def node_pixels(node, rect: list[int]) -> bytes:
    x, y, w, h = rect
    return bytes(node.pixelData(x, y, w, h))


def node_info(doc, node, parent, depth: int) -> dict:
    """Describe one node; pixel statistics cover the whole document rectangle."""
    bounds = node.bounds()
    full = [0, 0, doc.width(), doc.height()]
    info = {
        "name": node.name(),
        "id": node_id(node),
        "type": node.type(),
        "parent": None if parent is None or parent == doc.rootNode() else parent.name(),
        "parent_id": None if parent is None or parent == doc.rootNode() else node_id(parent),
        "depth": depth,
        "index": index_in_parent(node, parent),
        "bounds": [bounds.x(), bounds.y(), bounds.width(), bounds.height()],
        "visible": bool(node.visible()),
        "opacity": int(node.opacity()),
    }
    if node.type() in ("paintlayer", "grouplayer", "filelayer"):
        info["pixels"] = pixel_stats(node_pixels(node, full), full[2], full[3])
    return info


def index_in_parent(node, parent) -> int:
    """Position among the parent's layers (masks, such as the global selection, not counted)."""
    if parent is None:
        return -1
    ids = [node_id(c) for c in parent.childNodes() if not c.type().endswith("mask")]
    key = node_id(node)
    return ids.index(key) if key in ids else -1


def snapshot(doc) -> list[dict]:
    """Every node of ``doc`` in tree order (bottom to top within each parent)."""
    return [node_info(doc, node, parent, depth) for node, parent, depth in walk(doc.rootNode())]


def find_nodes(doc, prefix: str) -> list:
    return [node for node, _, _ in walk(doc.rootNode()) if node.name().startswith(prefix)]


def annotations(doc) -> dict:
    """All document annotations: type -> decoded text (JSON parsed when it is JSON)."""
    result = {}
    for kind in doc.annotationTypes():
        raw = bytes(doc.annotation(kind)).decode("utf-8", "replace")
        try:
            result[kind] = json.loads(raw)
        except ValueError:
            result[kind] = raw
    return result


def annotation_for(doc, layer_id: str):
    """The parameters stored for a layer: the value under its uniqueId in any annotation."""
    for value in annotations(doc).values():
        found = _lookup(value, layer_id)
        if found is not None:
            return found
    return None


def _lookup(value, layer_id: str):
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).strip("{}").lower() == layer_id:
                return item
        for item in value.values():
            found = _lookup(item, layer_id)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            if (
                isinstance(item, dict)
                and str(item.get("layer_id", item.get("id", ""))).strip("{}").lower() == layer_id
            ):
                return item
    if isinstance(value, str) and layer_id in value.lower():
        return value
    return None


def outside_selection(node, selection, rect: list[int]) -> dict:
    """Count the layer's visible pixels where the selection is empty / partly selected."""
    x, y, w, h = rect
    alpha = node_pixels(node, rect)[3::4]
    mask = bytes(selection.pixelData(x, y, w, h))
    outside = sum(1 for a, m in zip(alpha, mask, strict=True) if a and not m)
    inside = sum(1 for a, m in zip(alpha, mask, strict=True) if a and m)
    selected = len(mask) - mask.count(0)
    return {"visible_outside": outside, "visible_inside": inside, "selected": selected}


def widget_texts(widget) -> list[str]:
    """Visible text of a widget tree: labels, buttons, line edits, text edits, status tips."""
    texts = []
    for child in [widget, *widget.findChildren(QWidget)]:
        text = ""
        if isinstance(child, (QLabel, QAbstractButton, QLineEdit)):
            text = child.text()
        elif isinstance(child, (QTextEdit, QPlainTextEdit)):
            text = child.toPlainText()
        if text and child.isVisible():
            texts.append(text)
    return texts
