"""The artist's settings: a plain dataclass with explicit load(store)/save(store).

Inside Krita the store is Krita.readSetting/writeSetting under the group ``diffusion_layers``
(see krita_adapter.KritaSettingsStore); tests use a dict. Every value is a string in the store;
a value that cannot be parsed falls back to its default and is logged, never raised.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol

from .errors import InvalidSetting
from .protocol import CONTROL_TYPES, MAX_BATCH, MAX_SEED

log = logging.getLogger(__name__)

GROUP = "diffusion_layers"
HIRES_VALUES: Dict[str, Optional[bool]] = {"auto": None, "on": True, "off": False}
DEFAULT_SERVER_URL = "http://127.0.0.1:7860"
DEFAULT_HISTORY_MB = 32  # measured: ~0.35 s of .kra save per MB kept (docs/plugin.md)
MAX_HISTORY_MB = 4096


class SettingsStore(Protocol):
    def read(self, key: str, default: str) -> str: ...

    def write(self, key: str, value: str) -> None: ...


class DictStore:
    """In-memory store (tests, and a fallback outside Krita)."""

    def __init__(self, values: "Dict[str, str] | None" = None) -> None:
        self.values: Dict[str, str] = dict(values or {})

    def read(self, key: str, default: str) -> str:
        return self.values.get(key, default)

    def write(self, key: str, value: str) -> None:
        self.values[key] = value


@dataclass
class ControlLayer:
    """One control of a document: a layer used as a ControlNet input.

    ``layer_id`` is the layer's uniqueId (how it is found); ``layer`` its name when it was
    added (what the docker shows). A control without an id (written by hand) finds its layer
    by name."""

    layer: str
    type: str = "scribble"
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    layer_id: str = ""

    @property
    def ref(self) -> str:
        """What finds the layer: its uniqueId, else its name."""
        return self.layer_id or self.layer

    def check(self) -> "ControlLayer":
        if not self.layer and not self.layer_id:
            raise InvalidSetting("control layer name is empty")
        if self.type not in CONTROL_TYPES:
            raise InvalidSetting(f"control type {self.type!r} is not one of {CONTROL_TYPES}")
        if not 0.0 <= self.strength <= 2.0:
            raise InvalidSetting(f"control strength must be 0..2, got {self.strength!r}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise InvalidSetting(
                f"control start/end must satisfy 0 <= start <= end <= 1, got {self.start}/{self.end}"
            )
        return self


@dataclass
class LoraChoice:
    name: str
    weight: float = 1.0


@dataclass
class PluginSettings:
    server_url: str = DEFAULT_SERVER_URL
    token: str = ""
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    strength: float = 1.0
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "dpmpp_2m_karras"
    seed: int = -1  # -1 = random
    batch: int = 1
    loras: List[LoraChoice] = field(default_factory=list)
    live: bool = False
    style: str = ""  # the server style picked in the docker ("" = none)
    #: What picking the style put into these settings (model, steps …): a setting still equal
    #: to its value here is left to the style on the server (``styles.omitted``).
    style_values: Dict[str, Any] = field(default_factory=dict)
    history_limit_mb: int = DEFAULT_HISTORY_MB  # lossless history kept in each .kra
    hires: Optional[bool] = None  # high-resolution pass: None = the server's setting
    edit: bool = False  # Generate edits by instruction (mode "edit"; docker toggle "Edit")
    layers: int = 0  # Decompose into Layers: how many (0 = the checkpoint's default)

    def check(self) -> "PluginSettings":
        """Guard clauses: raise InvalidSetting naming the bad parameter and its value."""
        if not self.server_url.startswith(("http://", "https://")):
            raise InvalidSetting(
                f"server_url must start with http:// or https://, got {self.server_url!r}"
            )
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidSetting(f"strength must be 0..1, got {self.strength!r}")
        if not 1 <= self.steps <= 150:
            raise InvalidSetting(f"steps must be 1..150, got {self.steps!r}")
        if not 0.0 <= self.cfg_scale <= 30.0:
            raise InvalidSetting(f"cfg_scale must be 0..30, got {self.cfg_scale!r}")
        if not -1 <= self.seed <= MAX_SEED:
            raise InvalidSetting(f"seed must be -1 (random) or 0..{MAX_SEED}, got {self.seed!r}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise InvalidSetting(f"batch must be 1..{MAX_BATCH}, got {self.batch!r}")
        if not 0 <= self.history_limit_mb <= MAX_HISTORY_MB:
            raise InvalidSetting(
                f"history_limit_mb must be 0..{MAX_HISTORY_MB}, got {self.history_limit_mb!r}"
            )
        return self

    @classmethod
    def load(cls, store: SettingsStore) -> "PluginSettings":
        d = cls()
        return cls(
            server_url=store.read("server_url", d.server_url).strip() or d.server_url,
            token=store.read("token", d.token),
            model=store.read("model", d.model),
            prompt=store.read("prompt", d.prompt),
            negative_prompt=store.read("negative_prompt", d.negative_prompt),
            strength=_parse(store, "strength", float, d.strength),
            steps=_parse(store, "steps", int, d.steps),
            cfg_scale=_parse(store, "cfg_scale", float, d.cfg_scale),
            sampler=store.read("sampler", d.sampler) or d.sampler,
            seed=_parse(store, "seed", int, d.seed),
            batch=_parse(store, "batch", int, d.batch),
            loras=parse_loras(store.read("loras", "")),
            live=store.read("live", "false").lower() == "true",
            style=store.read("style", d.style),
            style_values=_parse(store, "style_values", _json_object, {}),
            history_limit_mb=_parse(store, "history_limit_mb", int, d.history_limit_mb),
            hires=HIRES_VALUES.get(store.read("hires", "auto").lower()),
            edit=store.read("edit", "false").lower() == "true",
            layers=_parse(store, "layers", int, d.layers),
        )

    def save(self, store: SettingsStore) -> None:
        for key in ("server_url", "token", "model", "prompt", "negative_prompt", "sampler"):
            store.write(key, str(getattr(self, key)))
        for key in ("strength", "steps", "cfg_scale", "seed", "batch"):
            store.write(key, repr(getattr(self, key)))
        store.write("loras", json.dumps([lo.__dict__ for lo in self.loras]))
        store.write("live", "true" if self.live else "false")
        store.write("edit", "true" if self.edit else "false")
        store.write("layers", repr(self.layers))
        store.write("hires", "auto" if self.hires is None else "on" if self.hires else "off")
        store.write("style", self.style)
        store.write("style_values", json.dumps(self.style_values))
        store.write("history_limit_mb", repr(self.history_limit_mb))


CLIENT_ID_KEY = "client_id"
_CLIENT_ID = re.compile(r"[0-9a-f]{32}")


def installation_id(store: SettingsStore) -> str:
    """This installation's client id (32 lowercase hex digits), sent as ``X-Client-Id``.

    Made once (``uuid4``) and kept in the store under ``client_id``, so it stays the same
    across Krita restarts; a missing or malformed value is replaced (and logged)."""
    value = store.read(CLIENT_ID_KEY, "").strip()
    if _CLIENT_ID.fullmatch(value):
        return value
    if value:
        log.warning("setting %s=%r is not 32 hex digits; making a new one", CLIENT_ID_KEY, value)
    value = uuid.uuid4().hex
    store.write(CLIENT_ID_KEY, value)
    return value


def _json_object(text: str) -> Dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"not a JSON object: {text!r}")
    return value


def _parse(store: SettingsStore, key: str, kind: Callable[[str], Any], default: Any) -> Any:
    text = store.read(key, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        log.warning("setting %s=%r is not a valid %s; using %r", key, text, kind.__name__, default)
        return default


def controls_json(controls: List[ControlLayer]) -> str:
    return json.dumps([c.__dict__ for c in controls])


def parse_controls(text: str) -> List[ControlLayer]:
    """A document's controls: JSON [{"layer", "type", "strength", "start", "end", "layer_id"}]."""
    if not text.strip():
        return []
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("not a list")
        controls = []
        for item in items:
            control = ControlLayer(
                layer=str(item["layer"]),
                type=str(item.get("type", "scribble")),
                strength=float(item.get("strength", 1.0)),
                start=float(item.get("start", 0.0)),
                end=float(item.get("end", 1.0)),
                layer_id=str(item.get("layer_id", "")),
            )
            controls.append(control.check())
        return controls
    except (ValueError, KeyError, TypeError, AttributeError, InvalidSetting) as exc:
        log.warning("ignoring setting controls=%r: %s", text, exc)
        return []


def parse_loras(text: str) -> List[LoraChoice]:
    if not text.strip():
        return []
    try:
        items = json.loads(text)
        return [LoraChoice(str(i["name"]), float(i.get("weight", 1.0))) for i in items]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring setting loras=%r: %s", text, exc)
        return []
