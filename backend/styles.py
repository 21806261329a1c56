"""Styles: reusable setups (checkpoint fallbacks, LoRAs, prompt template, settings) kept as JSON
files in one folder, so every artist on a shared server sees the same ones.

A user style is ``<styles_dir>/<name>.json`` holding a ``protocol.Style``. Built-in styles come
from the model families (``Family.styles``): a few per family that has a checkpoint installed,
named "<family label> <name>", read-only, listed first. A file that cannot be read is left out
of the list with a warning in the log (it never breaks the listing).

Names are checked before any path is made from them (``check_style_name``): letters, digits,
spaces, ``_ . -``, no leading dot or space, so a name can never leave the folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path

from pydantic import ValidationError

from backend.engine.families import FAMILIES
from backend.engine.types import Inventory
from backend.protocol import STYLE_NAME_PATTERN, Style

log = logging.getLogger(__name__)

SUFFIX = ".json"
_NAME = re.compile(STYLE_NAME_PATTERN)


class StyleError(Exception):
    """Base of the style store's errors; ``field`` names the request field at fault."""

    status = 400
    code = "style_error"

    def __init__(self, message: str, field: str | None = "name") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StyleNameError(StyleError):
    status = 422
    code = "invalid_style_name"


class StyleNotFound(StyleError):
    status = 404
    code = "style_not_found"


class StyleReadOnly(StyleError):
    status = 409
    code = "style_read_only"


class StyleStorageError(StyleError):
    status = 500
    code = "style_storage_failed"


def check_style_name(name: object, field: str = "name") -> str:
    """The name itself, or StyleNameError saying what is wrong with it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StyleNameError(
            f"{field}={str(name)[:90]!r}: a style name is 1 to 80 letters, digits, spaces, "
            "'_', '.' or '-'",
            field,
        )
    if name.startswith((".", " ")) or name.endswith((".", " ")):
        raise StyleNameError(
            f"{field}={name!r}: a style name may not start or end with a dot or a space", field
        )
    return name


def builtin_styles(inventory: Inventory) -> list[Style]:
    """A few styles per family with an installed checkpoint (plain checkpoints first)."""
    styles: list[Style] = []
    for family in FAMILIES:
        entries = [c for c in inventory.checkpoints if c.family == family.id]
        if not entries or not family.styles:
            continue
        ordered = [c.name for c in entries if not c.inpaint] + [
            c.name for c in entries if c.inpaint
        ]
        for spec in family.styles:
            data = {**spec, "name": f"{family.label} {spec['name']}"}
            styles.append(Style(**data, checkpoints=ordered[:16], builtin=True))
    return styles


class StyleStore:
    """The styles folder plus the built-ins (see the module doc). Thread-safe."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._lock = threading.Lock()

    # --- queries ---------------------------------------------------------------------------

    def list(self, inventory: Inventory) -> list[Style]:
        builtins = builtin_styles(inventory)
        taken = {style.name for style in builtins}
        users = [style for style in self._user_styles() if style.name not in taken]
        return builtins + sorted(users, key=lambda style: style.name.casefold())

    def get(self, name: str, inventory: Inventory, field: str = "name") -> Style:
        check_style_name(name, field)
        for style in builtin_styles(inventory):
            if style.name == name:
                return style
        path = self._path(name)
        if path is None or not path.is_file():
            raise StyleNotFound(
                f"{field}={name!r}: no such style; GET /v1/styles lists the styles", field
            )
        style = self._read(path)
        if style is None:
            raise StyleNotFound(
                f"{field}={name!r}: the style's file {path.name} cannot be read; save the "
                "style again",
                field,
            )
        return style

    # --- changes ---------------------------------------------------------------------------

    def put(self, name: str, style: Style, inventory: Inventory) -> Style:
        """Create or replace the user style ``name`` (``style.name`` must be ``name``)."""
        check_style_name(name)
        if style.name != name:
            raise StyleNameError(
                f"name={style.name!r}: the body names another style than the address "
                f"({name!r}); they must be the same",
                "name",
            )
        self._refuse_builtin(name, inventory, "replaced")
        path = self._writable_path(name)
        saved = style.model_copy(update={"builtin": False})
        text = json.dumps(saved.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
            except OSError as exc:
                log.error("saving style %r to %s failed: %s", name, path, exc)
                raise StyleStorageError(
                    f"The style {name!r} could not be saved: {exc.strerror or exc}.", None
                ) from exc
        return saved

    def delete(self, name: str, inventory: Inventory) -> None:
        check_style_name(name)
        self._refuse_builtin(name, inventory, "deleted")
        path = self._path(name)
        with self._lock:
            try:
                if path is None:
                    raise FileNotFoundError(name)
                path.unlink()
            except FileNotFoundError:
                raise StyleNotFound(f"name={name!r}: no such style", "name") from None
            except OSError as exc:
                raise StyleStorageError(
                    f"The style {name!r} could not be deleted: {exc.strerror or exc}.", None
                ) from exc

    # --- files -----------------------------------------------------------------------------

    def _refuse_builtin(self, name: str, inventory: Inventory, verb: str) -> None:
        if any(style.name == name for style in builtin_styles(inventory)):
            raise StyleReadOnly(
                f"{name!r} is a built-in style and cannot be {verb}: save your changes under "
                "another name",
                "name",
            )

    def _path(self, name: str) -> Path | None:
        return None if self.folder is None else self.folder / (check_style_name(name) + SUFFIX)

    def _writable_path(self, name: str) -> Path:
        path = self._path(name)
        if path is None:
            raise StyleStorageError(
                "This server keeps no styles folder (the styles_dir setting is empty).", None
            )
        return path

    def _user_styles(self) -> list[Style]:
        if self.folder is None or not self.folder.is_dir():
            return []
        styles = []
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            if _NAME.match(path.stem) and not path.name.startswith("."):
                style = self._read(path)
                if style is not None:
                    styles.append(style)
        return styles

    def _read(self, path: Path) -> Style | None:
        """The style in ``path`` (named by the file), or None when it cannot be used."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            data["name"] = path.stem
            data["builtin"] = False
            return Style.model_validate(data)
        except (OSError, ValueError, ValidationError) as exc:
            log.warning("style file %s left out: %s", path, exc)
            return None
