"""Generate's job (``plan_generate``), and Edit by instruction: ``mode: "edit"``.

With the docker's **Edit** toggle on, the prompt is an instruction about the picture: the
selection's region (with context; the result is placed exactly like an inpaint result) or the
whole canvas. Reference images come from layers:

* every ``<layer:Name>`` tag in the prompt, in order of appearance (the tag itself is taken out
  of the text that is sent: "put the cup from <layer:Cup> on the table" sends "put the cup from
  on the table" plus the layer "Cup" as reference 1), then
* every control row of type ``reference`` (its layer), after them; a layer named twice counts
  once.

Each reference is **the whole layer** (its pixels' bounds on the canvas, as the artist sees it
when only that layer shows), not the part under the edited region: a reference is a picture of
something, and the thing may lie anywhere on the canvas. It travels as a PNG of its own size
(at most ``MAX_REFERENCE_SIDE`` px per side) in a control of type ``reference`` with no model.

Before anything is sent, a sentence for: an unknown, empty or hidden layer, more references than
``capabilities.edit.max_references``, another control type (only references guide an edit), and
a checkpoint that cannot edit (naming those that can). Live frames with Edit on carry the same
references, refused with the same sentences (``edit_references``, ``add_references``). No Qt
widgets, no Krita.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from . import model_capabilities, styles
from .canvas import CanvasDocument
from .errors import ControlLayerMissing, ControlLayerUnusable, InvalidSetting
from .geometry import Rect
from .pixels import bgra_to_qimage, encode_png, is_fully_transparent
from .planning import Plan, plan_job
from .protocol import MAX_CONTROLS, PNG, ControlParams, JobParams
from .qt import Qt
from .request import Part, build_job, build_planned, params_part
from .settings import ControlLayer, PluginSettings

if TYPE_CHECKING:
    from .protocol import ModelsInfo

#: ``<layer:Name>``: the name runs to the closing ``>`` (spaces allowed, case-sensitive).
LAYER_TAG = re.compile(r"[ \t]*<layer:([^<>]*)>", re.IGNORECASE)
#: References are scaled down to this many px on their longer side (the edit models see them
#: at about a megapixel; a 4000 px layer would cost a long PNG encode on Krita's UI thread).
MAX_REFERENCE_SIDE = 1024


def layer_tags(prompt: str) -> Tuple[str, List[str]]:
    """(the prompt without its ``<layer:…>`` tags, the names in order of appearance)."""
    names = [m.group(1).strip() for m in LAYER_TAG.finditer(prompt)]
    text = LAYER_TAG.sub("", prompt)  # with the spaces before it: "from <layer:Cup> on" → "from on"
    return text.strip(), names


def sent_prompt(settings: PluginSettings) -> str:
    """The prompt as a live frame sends it: without ``<layer:…>`` tags while Edit is on (their
    layers travel as references: ``edit_references``)."""
    return layer_tags(settings.prompt)[0] if settings.edit else settings.prompt


def watched_layers(settings: PluginSettings, controls: Sequence[ControlLayer]) -> List[str]:
    """The layers whose pixels shape a live frame besides the active one: the control rows'
    (uniqueIds), and with Edit on the ``<layer:…>`` tags' (names)."""
    tagged = layer_tags(settings.prompt)[1] if settings.edit else []
    return [c.ref for c in controls] + [name for name in tagged if name]


@dataclass(frozen=True)
class Wanted:
    """One reference asked for: how the layer is found and how the artist named it."""

    ref: str  # uniqueId or name
    name: str
    where: str  # "<layer:Name>" or "the reference control 'Name'"
    control: Optional[ControlLayer] = None  # the control row it came from (strength, window)


@dataclass
class Reference:
    wanted: Wanted
    rect: Rect  # the layer's pixels on the canvas
    png: bytes  # at most MAX_REFERENCE_SIDE px per side


def wanted_references(prompt: str, controls: Sequence[ControlLayer]) -> List[Wanted]:
    """The tags' layers then the reference controls' (each layer once); raises a sentence for
    an empty tag or a control type that cannot guide an edit."""
    _text, names = layer_tags(prompt)
    out: List[Wanted] = []
    for name in names:
        if not name:
            raise InvalidSetting(
                "A <layer:> tag in the prompt names no layer: write the layer's name after "
                "'layer:', e.g. <layer:Cup>."
            )
        out.append(Wanted(name, name, f"<layer:{name}>"))
    for control in controls:
        if control.type != "reference":
            raise InvalidSetting(
                f"The control layer '{control.layer}' ({control.type}) cannot guide an edit: "
                "only reference controls can. Remove it, or turn Edit off."
            )
        where = f"the reference control '{control.layer}'"
        out.append(Wanted(control.ref, control.layer, where, control))
    unique: List[Wanted] = []
    for item in out:
        if all(item.name != u.name and item.ref != u.ref for u in unique):
            unique.append(item)
    return unique


def check_count(wanted: Sequence[Wanted], most: int, model: str) -> None:
    """More references than the checkpoint takes (``capabilities.edit.max_references``)."""
    if len(wanted) <= min(most, MAX_CONTROLS):
        return
    names = ", ".join(f"'{w.name}'" for w in wanted)
    who = f"'{model}'" if model else "The chosen checkpoint"
    if most <= 0:
        raise InvalidSetting(
            f"{who} edits without reference images, but {names} are asked for: remove the "
            "<layer:…> tags and reference controls, or pick a checkpoint that takes references."
        )
    raise InvalidSetting(
        f"{who} takes at most {most} reference image{'s' if most != 1 else ''} for an edit; "
        f"{len(wanted)} are asked for ({names}): remove some <layer:…> tags or reference controls."
    )


class EncodedReferences:
    """The PNGs of the references sent last, by layer, bounds and pixel CRC: a live frame
    whose reference layers did not change sends the same bytes without encoding them again
    (a 1024 px PNG costs tens of ms on Krita's UI thread, every frame). Keeps the last
    ``MAX_CONTROLS`` entries."""

    def __init__(self) -> None:
        self._pngs: Dict[Tuple[str, Rect, int], bytes] = {}
        self.encoded = 0  # PNGs encoded so far (tests, logs)

    def png(self, ref: str, rect: Rect, pixels: bytes, encode: Any) -> bytes:
        """``encode()`` (the PNG of ``pixels``) unless these pixels were encoded before."""
        key = (ref, rect, zlib.crc32(pixels))
        png = self._pngs.pop(key, None)
        if png is None:
            png, self.encoded = encode(), self.encoded + 1
        self._pngs[key] = png  # the newest last
        while len(self._pngs) > MAX_CONTROLS:
            self._pngs.pop(next(iter(self._pngs)))
        return png


def read_reference(
    canvas: Any, doc: CanvasDocument, wanted: Wanted, cache: Optional[EncodedReferences] = None
) -> Reference:
    """The whole layer as a PNG; a sentence when it is unknown, a mask, hidden or empty.
    ``canvas``: krita_adapter.KritaCanvas (its ``documents()`` knows the layer's facts);
    ``cache``: PNGs already encoded for unchanged layers (live frames)."""
    facts = canvas.documents().layer_facts(doc.key, wanted.ref)
    if facts is None:
        raise ControlLayerMissing(
            f"There is no layer named '{wanted.name}' in this document ({wanted.where}): "
            "check the name (capitals count) or rename the layer."
        )
    if facts.mask:
        raise ControlLayerUnusable(
            f"'{wanted.name}' ({wanted.where}) is a mask, not a layer: name the layer it "
            "belongs to."
        )
    if facts.hidden_by:
        inside = (
            ""
            if facts.hidden_by == facts.name
            else f" (inside the hidden group '{facts.hidden_by}')"
        )
        raise ControlLayerUnusable(
            f"The reference layer '{wanted.name}' is hidden{inside}, so it shows nothing: "
            f"make it visible, or take {wanted.where} out."
        )
    pixels = None if facts.bounds is None else doc.read_layer(wanted.ref, facts.bounds)
    if facts.bounds is None or pixels is None or is_fully_transparent(pixels):
        raise ControlLayerUnusable(
            f"The reference layer '{wanted.name}' is empty: paint on it, or take "
            f"{wanted.where} out."
        )
    rect, found = facts.bounds, pixels

    def encode() -> bytes:
        image = bgra_to_qimage(found, rect.width, rect.height)
        if max(rect.width, rect.height) > MAX_REFERENCE_SIDE:
            image = image.scaled(
                MAX_REFERENCE_SIDE,
                MAX_REFERENCE_SIDE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        return encode_png(image)

    png = encode() if cache is None else cache.png(wanted.ref, rect, found, encode)
    return Reference(wanted, rect, png)


def edit_references(
    canvas: Any,
    doc: CanvasDocument,
    settings: PluginSettings,
    controls: Sequence[ControlLayer],
    models: "Optional[ModelsInfo]",
    cache: Optional[EncodedReferences] = None,
) -> List[Reference]:
    """The references of an edit (Generate's job and every live frame with Edit on): the tags'
    layers then the reference rows', counted against the checkpoint's ``max_references`` and
    read whole. Raises a sentence (PluginError) for any refusal; nothing is read before the count
    is checked. ``cache``: PNGs of unchanged layers are not encoded again (live frames)."""
    capabilities = model_capabilities.for_model(models, settings.model)
    edit = capabilities.edit or model_capabilities.EditAbility()
    wanted = wanted_references(settings.prompt, controls)
    check_count(wanted, edit.max_references, capabilities.model)
    return [read_reference(canvas, doc, w, cache) for w in wanted]


def add_references(
    controls: List[ControlParams], parts: List[Part], references: Sequence[Reference]
) -> None:
    """Each reference as a control ``{"type": "reference", "model": null}`` (the row's weight
    and window, else 1.0 over the whole schedule) and its PNG part, named after ``controls``'
    own (``control_N``); both lists grow in place."""
    for reference in references:
        name, row = f"control_{len(controls)}", reference.wanted.control
        controls.append(
            ControlParams(
                type="reference",
                image=name,
                model=None,
                strength=row.strength if row is not None else 1.0,
                start=row.start if row is not None else 0.0,
                end=row.end if row is not None else 1.0,
            )
        )
        parts.append(Part(name, PNG, reference.png))


def plan_generate(
    canvas: Any,
    doc: CanvasDocument,
    settings: PluginSettings,
    controls: Sequence[ControlLayer],
    models: "Optional[ModelsInfo]",
) -> Tuple[Plan, JobParams, List[Part]]:
    """Generate's job: the planned mode (``planning.plan_job``), or with ``settings.edit`` the
    edit with its references. Raises a sentence (PluginError) when it cannot be sent."""
    if not settings.edit:
        if layer_tags(settings.prompt)[1]:
            raise InvalidSetting(
                "<layer:…> tags name reference layers for an edit by instruction: turn Edit "
                "on (a checkpoint that can edit), or take the tags out of the prompt."
            )
        plan = plan_job(doc, settings, controls)
        return (plan, *build_planned(settings, plan, models))
    settings.check()
    refusal = model_capabilities.ability_refusal(models, settings.model, "edit")
    if refusal is not None:
        raise InvalidSetting(refusal)
    capabilities = model_capabilities.for_model(models, settings.model)
    prompt, _names = layer_tags(settings.prompt)
    wanted_references(settings.prompt, controls)  # an empty tag or another control: a sentence
    styles.check_inline_loras(prompt, settings.negative_prompt, models)
    references = edit_references(canvas, doc, settings, controls, models)
    sent = dataclasses.replace(settings, prompt=prompt)
    plan = plan_job(doc, sent, (), read_controls=False)
    sent = model_capabilities.effective_settings(sent, capabilities)
    params, parts = build_job(sent, plan.choice, plan.region, plan.image, plan.mask, [])
    add_references(params.controls, parts, references)
    parts[0] = params_part(params, styles.omitted(sent))  # now with the reference controls
    return plan, params, parts
