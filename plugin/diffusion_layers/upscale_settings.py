"""The artist's Upscale settings (docker section "Upscale"): a plain dataclass, stored like
PluginSettings under keys prefixed ``upscale_``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from .errors import InvalidSetting
from .protocol import MAX_UPSCALE_FACTOR, MIN_UPSCALE_FACTOR
from .settings import SettingsStore

log = logging.getLogger(__name__)

NEW_DOCUMENT = "new_document"  # the whole canvas goes up into a new document
IN_PLACE = "in_place"  # factor 1 + refine over the selection / active layer / canvas
TARGETS = (NEW_DOCUMENT, IN_PLACE)


@dataclass
class UpscaleSettings:
    factor: float = 2.0
    model: str = ""  # an upscaler name from the server; "" = plain (Lanczos) resampling
    refine: bool = False
    strength: float = 0.35  # the refine pass's strength
    target: str = NEW_DOCUMENT
    tile_size: Optional[int] = None  # px; None = the checkpoint's native size
    tile_overlap: Optional[int] = None  # px; None = automatic

    def check(self) -> "UpscaleSettings":
        """Guard clauses: raise InvalidSetting naming the bad parameter and its value."""
        if not MIN_UPSCALE_FACTOR <= self.factor <= MAX_UPSCALE_FACTOR:
            raise InvalidSetting(
                f"The upscale factor must be {MIN_UPSCALE_FACTOR:g} to "
                f"{MAX_UPSCALE_FACTOR:g}, got {self.factor!r}."
            )
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidSetting(f"The refine strength must be 0..1, got {self.strength!r}.")
        if self.target not in TARGETS:
            raise InvalidSetting(
                f"The upscale target must be one of {TARGETS}, got {self.target!r}."
            )
        if self.tile_size is not None and self.tile_size < 64:
            raise InvalidSetting(f"The tile size must be at least 64 px, got {self.tile_size!r}.")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise InvalidSetting(f"The tile overlap must be 0 or more, got {self.tile_overlap!r}.")
        return self

    @classmethod
    def load(cls, store: SettingsStore) -> "UpscaleSettings":
        d = cls()
        target = store.read("upscale_target", d.target)
        return cls(
            factor=_float(store, "upscale_factor", d.factor),
            model=store.read("upscale_model", d.model),
            refine=store.read("upscale_refine", "false").lower() == "true",
            strength=_float(store, "upscale_strength", d.strength),
            target=target if target in TARGETS else d.target,
            tile_size=_int(store, "upscale_tile_size"),
            tile_overlap=_int(store, "upscale_tile_overlap"),
        )

    def save(self, store: SettingsStore) -> None:
        store.write("upscale_factor", repr(self.factor))
        store.write("upscale_model", self.model)
        store.write("upscale_refine", "true" if self.refine else "false")
        store.write("upscale_strength", repr(self.strength))
        store.write("upscale_target", self.target)
        store.write("upscale_tile_size", "" if self.tile_size is None else str(self.tile_size))
        store.write(
            "upscale_tile_overlap", "" if self.tile_overlap is None else str(self.tile_overlap)
        )


def _float(store: SettingsStore, key: str, default: float) -> float:
    text = store.read(key, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        log.warning("setting %s=%r is not a number; using %r", key, text, default)
        return default


def _int(store: SettingsStore, key: str) -> Optional[int]:
    text = store.read(key, "").strip()
    try:
        return int(text) if text else None
    except ValueError:
        log.warning("setting %s=%r is not a whole number; using automatic", key, text)
        return None
