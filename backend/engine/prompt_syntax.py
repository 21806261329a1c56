"""The prompt syntax artists type, before the text reaches the text encoder.

* ``#`` to the end of the line is a comment (``\\#`` is a literal ``#``).
* ``<lora:name:0.8>`` (or ``<lora:name>``, weight 1; ``<lyco:...>`` alike) applies a LoRA to the
  whole job, validated against the installed LoRAs like any other (a name is matched exactly,
  else by its file name when exactly one LoRA has it). The tag is removed from the text. A tag
  names the same LoRA as the request's ``loras`` list: the tag's weight wins.
* ``{red|blue|green}`` picks one option, nested groups allowed (``\\{ \\} \\|`` are literal; a
  group without ``|`` stays as it is). Choices come from the item's seed (result ``i`` uses
  ``seed + i``): the same seed always makes the same prompt. The choices go into metadata.
* Emphasis (``(word:1.2)``, ``((word))``, ``[word]``) is left in the text for
  ``prompt_weights`` (compel) to turn into weighted embeddings.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from backend.engine.errors import InvalidRequest
from backend.engine.types import GenerationRequest, LoraInput

MAX_LORAS = 8
LORA_TAG = re.compile(r"<(?:lora|lyco):([^<>]*)>", re.IGNORECASE)
_LITERALS = {"{": "{", "}": "}", "|": "|", "#": "#"}


@dataclass
class PromptPlan:
    """One job's prompts after the syntax: per batch item, plus the job's LoRAs."""

    prompts: list[str]
    negatives: list[str]
    wildcards: list[list[str]]  # per item: the options chosen, in order
    loras: list[LoraInput] = field(default_factory=list)  # request's + inline, merged

    def same_for_all(self) -> bool:
        return len(set(zip(self.prompts, self.negatives, strict=True))) <= 1


def strip_comments(text: str) -> str:
    """``text`` without ``#`` comments (each to the end of its line)."""
    lines = []
    for line in text.split("\n"):
        index = _unescaped(line, "#")
        lines.append(line if index < 0 else line[:index].rstrip())
    return "\n".join(lines)


def _unescaped(text: str, char: str, start: int = 0) -> int:
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == char:
            return index
        index += 1
    return -1


def _unescape(text: str) -> str:
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text) and text[index + 1] in _LITERALS:
            out.append(text[index + 1])
            index += 2
            continue
        out.append(text[index])
        index += 1
    return "".join(out)


def extract_loras(text: str, field_name: str) -> tuple[str, list[tuple[str, float, str]]]:
    """``text`` without its LoRA tags, and each tag's (name, weight, tag) in order."""
    found: list[tuple[str, float, str]] = []
    for match in LORA_TAG.finditer(text):
        tag = match.group(0)
        parts = match.group(1).split(":")
        name = parts[0].strip()
        if not name or len(parts) > 2:
            raise InvalidRequest(
                field_name, tag, "write a LoRA as <lora:name> or <lora:name:weight>"
            )
        weight = 1.0
        if len(parts) == 2:
            try:
                weight = float(parts[1])
            except ValueError:
                raise InvalidRequest(
                    field_name, tag, f"the LoRA weight {parts[1]!r} is not a number"
                ) from None
            if not math.isfinite(weight) or not -4.0 <= weight <= 4.0:
                raise InvalidRequest(field_name, tag, "a LoRA weight is -4..4")
        found.append((name, weight, tag))
    cleaned = LORA_TAG.sub("", text)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    cleaned = re.sub(r"\s+,", ",", cleaned)
    return cleaned.strip(" \t,"), found


def _group_end(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start``, or -1."""
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _split_options(body: str) -> list[str]:
    options, depth, current, index = [], 0, [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            current.append(body[index : index + 2])
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "|" and depth == 0:
            options.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    options.append("".join(current))
    return options


def _expand(text: str, rng: random.Random, chosen: list[str] | None) -> str:
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index : index + 2])
            index += 2
            continue
        end = _group_end(text, index) if char == "{" else -1
        if end < 0:
            out.append(char)
            index += 1
            continue
        options = _split_options(text[index + 1 : end])
        if len(options) == 1:
            out.append("{" + _expand(options[0], rng, None) + "}")
        else:
            pick = _expand(options[rng.randrange(len(options))], rng, None)
            out.append(pick)
            if chosen is not None:
                chosen.append(_unescape(pick).strip())
        index = end + 1
    return "".join(out)


def expand_wildcards(text: str, seed: int) -> tuple[str, list[str]]:
    """``text`` with every ``{a|b}`` group replaced by one option chosen from ``seed``."""
    chosen: list[str] = []
    expanded = _expand(text, random.Random(seed), chosen)
    return _unescape(expanded), chosen


def resolve_lora_name(name: str, installed: Collection[str]) -> str | None:
    """The installed LoRA a tag names: exactly, else the one whose file name it is."""
    if name in installed:
        return name
    matches = [item for item in installed if item.rsplit("/", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def plan_prompts(
    prompt: str,
    negative_prompt: str,
    loras: Sequence[LoraInput],
    seeds: Sequence[int],
    installed_loras: Collection[str],
) -> PromptPlan:
    """Comments, LoRA tags and wildcards of one job (see the module doc); InvalidRequest on
    ``prompt``/``negative_prompt`` for a malformed tag or a LoRA that is not installed."""
    texts = {}
    inline: list[LoraInput] = []
    for field_name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        cleaned, tags = extract_loras(strip_comments(text), field_name)
        texts[field_name] = cleaned
        for name, weight, tag in tags:
            resolved = resolve_lora_name(name, installed_loras)
            if resolved is None:
                raise InvalidRequest(
                    field_name,
                    tag,
                    f"names the LoRA {name!r}, which is not installed: check the name against "
                    "the LoRA list, or put the file in the models/lora/ folder",
                )
            inline = [lora for lora in inline if lora.name != resolved]
            inline.append(LoraInput(name=resolved, weight=weight, field=field_name))
    names = {lora.name for lora in inline}
    merged = [lora for lora in loras if lora.name not in names] + inline
    if len(merged) > MAX_LORAS:
        raise InvalidRequest(
            "prompt", len(merged), f"with the prompt's LoRA tags the job has more than {MAX_LORAS}"
        )
    prompts, negatives, wildcards = [], [], []
    for seed in seeds:
        positive, chosen = expand_wildcards(texts["prompt"], seed)
        negative, chosen_negative = expand_wildcards(texts["negative_prompt"], seed + 2**33)
        prompts.append(positive)
        negatives.append(negative)
        wildcards.append(chosen + chosen_negative)
    return PromptPlan(prompts, negatives, wildcards, merged)


def plan_for(request: GenerationRequest, installed_loras: Collection[str]) -> PromptPlan:
    """``plan_prompts`` for an engine request (seeds ``seed + i`` over the batch)."""
    seeds = [request.seed + index for index in range(max(1, request.batch))]
    return plan_prompts(
        request.prompt, request.negative_prompt, request.loras, seeds, installed_loras
    )


def with_prompt_loras(
    request: GenerationRequest, installed_loras: Collection[str]
) -> GenerationRequest:
    """``request`` whose ``loras`` also hold its prompt's ``<lora:...>`` tags (checked like
    the others, errors naming ``prompt``)."""
    return replace(request, loras=plan_for(request, installed_loras).loras)


def encode_plan(
    encoder: Any, pipe: Any, plan: PromptPlan, clip_skip: int, **options: Any
) -> tuple[Any, list[Any]]:
    """The job's embeddings, and one per item when wildcards made the items differ
    (``encoder``: a ``prompts.PromptEncoder``; ``options``: its model/family/variant)."""
    items = [
        encoder.encode(pipe, prompt, negative, clip_skip=clip_skip, **options)
        for prompt, negative in (
            zip(plan.prompts, plan.negatives, strict=True)
            if not plan.same_for_all()
            else [(plan.prompts[0], plan.negatives[0])]
        )
    ]
    return items[0], (items if len(items) > 1 else [])


def item_record(plan: PromptPlan, index: int) -> dict[str, Any]:
    """What the syntax resolved for item ``index`` (metadata ``resolved``)."""
    from backend.engine.prompt_weights import emphasis_record

    return {
        "prompt": plan.prompts[index],
        "negative_prompt": plan.negatives[index],
        "wildcards": list(plan.wildcards[index]),
        "weights": emphasis_record(plan.prompts[index]),
        "negative_weights": emphasis_record(plan.negatives[index]),
    }
