"""One spelling of a parameter's path, whichever layer names it: ``loras[0].name``.

Every error that names a parameter (pydantic validation, multipart parsing, the engine's
request checks, the live and preprocess routes, the CLI) goes through ``field_path`` or
``canonical_field``, so a client can map ``field`` to a widget with one rule: list items as
``name[index]``, nested keys joined with ``.`` (``controls[1].model``, ``inpaint.fill``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Location parts FastAPI puts in front of a parameter's own path.
_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})
_DOTTED_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def field_path(parts: Iterable[object]) -> str | None:
    """A location tuple as the canonical path: ``("loras", 0, "name")`` -> ``loras[0].name``.

    FastAPI's own roots (``body``, ``query``, ...) are dropped; None when nothing is left."""
    text = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif not text and str(part) in _ROOTS:
            continue
        else:
            text += ("." if text else "") + str(part)
    return text or None


def canonical_field(field: str | None) -> str | None:
    """Any spelling of a path as the canonical one: ``loras.0.name`` -> ``loras[0].name``."""
    if field is None:
        return None
    return _DOTTED_INDEX.sub(lambda match: f"[{match.group(1)}]", field.strip()) or None


def problem(
    field: str | None, reason: str, value: object = None, *, show_value: bool = True
) -> str:
    """The one sentence shape of a refused parameter: ``field=value: reason`` (or
    ``field: reason`` when the value is absent or would say nothing)."""
    if field is None:
        return reason
    if not show_value:
        return f"{field}: {reason}"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{field}={shown}: {reason}"


def with_field(message: str, field: str | None) -> str:
    """``message`` led by its field's canonical path, unless it already starts with it (for
    outputs without a separate field, like the command line)."""
    path = canonical_field(field)
    if not path or message.startswith(path):
        return message
    return f"{path}: {message}"
