"""Styles on the plugin side: what picking one puts into the settings, what a job then leaves to
the server's style, "Save as style…" from the current settings, and the prompt's inline LoRAs.

The server resolves a style: a field *present* in the request's JSON wins, even at its default
value; a field left out takes the style's value, else the default; prompt, negative prompt and
LoRAs combine with the style's. Picking a style loads its model, sampler, steps and CFG into the
settings so the docker shows them under "Advanced"; a job leaves out every such setting the
artist did not change since (``omitted``), so the server's current style decides it — an artist
who edits a value under "Advanced" overrides the style for that value only. Clip skip and VAE,
which the docker does not set, are always left to the style; the negative prompt box holds
what the artist adds to the style's.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence

from .errors import InvalidSetting
from .protocol import STYLE_NAME_PATTERN, LoraParams, ModelsInfo, Style
from .settings import PluginSettings

#: Settings a style can give a value (same names in PluginSettings and JobParams).
STYLE_SETTINGS = ("model", "sampler", "steps", "cfg_scale")
#: Request fields the docker never sets: with a style they are always left to it.
LEFT_TO_STYLE = ("clip_skip", "vae")
#: Live requests leave sampler/steps/CFG to the server's live preset (the style's live_*).
LIVE_LEFT_TO_STYLE = ("sampler", "steps", "cfg_scale", "clip_skip", "vae")

_INLINE_LORA = re.compile(r"<(?:lora|lyco):([^<>]*)>", re.IGNORECASE)  # as the server reads
_COMMENT = re.compile(r"(?<!\\)#[^\n]*")  # "\#" is a literal "#"


def check_name(name: str) -> str:
    """A style name the server accepts (1..80 letters, digits, space, ``_ . -``)."""
    name = name.strip()
    if not re.match(STYLE_NAME_PATTERN, name):
        raise InvalidSetting(
            f"Style name {name!r} cannot be used: use 1 to 80 letters, digits, spaces, "
            "'_', '.' or '-'."
        )
    return name


def first_installed(style: Style, models: Optional[ModelsInfo]) -> Optional[str]:
    """The checkpoint the server will use for the style: its first one that is installed."""
    installed = {c.name for c in models.checkpoints} if models is not None else set()
    for name in style.checkpoints:
        if name in installed:
            return name
    return None


def values_of(style: Style, models: Optional[ModelsInfo]) -> Dict[str, Any]:
    """The settings the style gives (only those it sets)."""
    values: Dict[str, Any] = {}
    checkpoint = first_installed(style, models)
    if checkpoint is not None:
        values["model"] = checkpoint
    for key in ("sampler", "steps", "cfg_scale"):
        if getattr(style, key) is not None:
            values[key] = getattr(style, key)
    return values


def pick(style: Optional[Style], models: Optional[ModelsInfo]) -> Dict[str, Any]:
    """``update_settings`` values for picking ``style`` (None: no style)."""
    if style is None:
        return {"style": "", "style_values": {}}
    values = values_of(style, models)
    return dict(values, style=style.name, style_values=dict(values))


def omitted(settings: PluginSettings) -> List[str]:
    """JobParams keys to leave out so the server's style decides them: every style setting
    the artist has not changed since picking the style."""
    if not settings.style:
        return []
    given = settings.style_values
    same = [k for k in STYLE_SETTINGS if k in given and getattr(settings, k) == given[k]]
    return same + list(LEFT_TO_STYLE)


def live_omitted(settings: PluginSettings) -> List[str]:
    """LiveParams keys to leave out: the model as for jobs, the rest to the style's live_*."""
    if not settings.style:
        return []
    return [k for k in omitted(settings) if k == "model"] + list(LIVE_LEFT_TO_STYLE)


def overridden(settings: PluginSettings) -> List[str]:
    """Style settings the artist changed under "Advanced" (sent; they win over the style)."""
    given = settings.style_values
    return [k for k in STYLE_SETTINGS if k in given and getattr(settings, k) != given[k]]


def from_settings(name: str, settings: PluginSettings, base: Optional[Style]) -> Style:
    """A new style from the current settings (the picked style's template and LoRAs kept)."""
    loras = list(base.loras) if base is not None else []
    for lora in settings.loras:
        loras = [lo for lo in loras if lo.name != lora.name] + [LoraParams(lora.name, lora.weight)]
    return Style(
        name=check_name(name),
        checkpoints=[settings.model] if settings.model else list(base.checkpoints if base else []),
        loras=loras,
        prompt=base.prompt if base is not None else "{prompt}",
        negative_prompt=", ".join(
            t for t in (base.negative_prompt if base else "", settings.negative_prompt) if t.strip()
        ),
        sampler=settings.sampler,
        steps=settings.steps,
        cfg_scale=settings.cfg_scale,
        clip_skip=base.clip_skip if base is not None else None,
        vae=base.vae if base is not None else None,
        prediction=base.prediction if base is not None else None,
        live_sampler=base.live_sampler if base is not None else None,
        live_steps=base.live_steps if base is not None else None,
        resolution=base.resolution if base is not None else None,
    )


def describe(style: Style, models: Optional[ModelsInfo]) -> str:
    """One line saying what the style sets (the docker's tooltip and summary)."""
    parts = []
    checkpoint = first_installed(style, models)
    if style.checkpoints:
        parts.append(checkpoint or f"needs one of {', '.join(style.checkpoints)} (not installed)")
    parts += [f"{lo.name} {lo.weight:g}" for lo in style.loras]
    if style.prompt.strip() not in ("", "{prompt}"):
        parts.append(f"prompt: {style.prompt}")
    if style.negative_prompt.strip():
        parts.append(f"negative: {style.negative_prompt}")
    for key, label in (("sampler", ""), ("steps", " steps"), ("cfg_scale", " CFG")):
        value = getattr(style, key)
        if value is not None:
            parts.append(f"{value:g}{label}" if isinstance(value, float) else f"{value}{label}")
    return ("Built-in. " if style.builtin else "") + (", ".join(parts) or "Sets nothing.")


# -- inline LoRAs in the prompt --------------------------------------------------------------


def inline_loras(prompt: str) -> List[str]:
    """The names of ``<lora:name:weight>`` (and ``<lyco:…>``) tags outside ``#`` comments."""
    text = _COMMENT.sub("", prompt)
    return [m.group(1).split(":")[0].strip() for m in _INLINE_LORA.finditer(text)]


def _installed(name: str, known: Sequence[str]) -> bool:
    """The server's rule: the exact name, else the file name of exactly one installed LoRA."""
    return name in known or sum(k.rsplit("/", 1)[-1] == name for k in known) == 1


def unknown_loras(prompt: str, known: Sequence[str]) -> List[str]:
    """Inline LoRA names the server does not have."""
    return [n for n in inline_loras(prompt) if not _installed(n, known)]


def check_inline_loras(prompt: str, negative: str, models: Optional[ModelsInfo]) -> None:
    """Raise a sentence naming every unknown ``<lora:…>`` (nothing is checked before the
    server's LoRA list arrived: the server checks again anyway)."""
    if models is None:
        return
    known = [lo.name for lo in models.loras]
    for where, text in (("prompt", prompt), ("negative prompt", negative)):
        unknown = unknown_loras(text, known)
        if unknown:
            names = ", ".join(f"'{n}'" for n in unknown)
            raise InvalidSetting(
                f"The {where} names LoRA {names}, which the server does not have: fix the "
                "name in <lora:name:weight> or remove the tag (the LoRA list shows the "
                "installed ones)."
            )
