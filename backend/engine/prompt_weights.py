"""Emphasis in prompts, A1111's syntax, turned into weighted embeddings by compel.

``(word:1.2)`` sets the weight of ``word`` to 1.2, ``(word)`` multiplies it by 1.1 (``((word))``
by 1.21), ``[word]`` divides it by 1.1; ``\\(`` ``\\)`` ``\\[`` ``\\]`` are literal brackets.
``parse_emphasis`` is A1111's own parser (``prompt_parser.parse_prompt_attention``): it
returns the text as fragments with their weights, which is exactly what compel's
``EmbeddingsProvider.get_embeddings_for_weighted_prompt_fragments`` takes. Compel (the
well-kept prompt-weighting library for diffusers) then scales each token's embedding away from
the empty prompt's (weights above 1) and blends towards the prompt without the fragment
(weights below 1).

Long prompts keep working: compel chunks the tokens into the encoder's window (75 tokens
between BOS and EOS) the same way ``prompts.chunk_token_ids`` does, and ``clip_skip`` follows
the same A1111 convention as ``prompts._encode_one`` (the hidden states are read by the
override below). A prompt without emphasis never goes through here: its embeddings stay
byte-identical to the plain encoder's.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from backend.engine.clip_layout import final_layer_norm

MIN_WEIGHT = 0.0
#: A1111's tokens: escapes, brackets, ":weight)" closers, plain text runs, lone colons.
_ATTENTION = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:"
)
ROUND, SQUARE = 1.1, 1 / 1.1


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """``text`` as (fragment, weight) pairs; neighbours of equal weight are merged."""
    result: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in result[start:]:
            item[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            result.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(result))
        elif token == "[":
            square_open.append(len(result))
        elif weight is not None and round_open:
            try:
                multiply(round_open.pop(), float(weight))
            except ValueError:
                result.append([token, 1.0])
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            result.append([token, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    merged: list[list[Any]] = []
    for fragment, weight in result:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += fragment
        else:
            merged.append([fragment, weight])
    return [(fragment, max(MIN_WEIGHT, float(weight))) for fragment, weight in merged] or [
        ("", 1.0)
    ]


def plain_text(fragments: list[tuple[str, float]]) -> str:
    """The text the fragments spell, brackets and weights removed."""
    return "".join(fragment for fragment, _ in fragments)


def is_weighted(fragments: list[tuple[str, float]]) -> bool:
    return any(weight != 1.0 for _, weight in fragments)


def emphasis_record(text: str) -> list[list[Any]]:
    """The emphasised fragments of ``text`` as [[fragment, weight], ...] (metadata)."""
    return [
        [fragment.strip(), round(weight, 4)]
        for fragment, weight in parse_emphasis(text)
        if weight != 1.0 and fragment.strip()
    ]


def _provider_class() -> type:
    from compel.embeddings_provider import EmbeddingsProvider

    class ClipSkipProvider(EmbeddingsProvider):
        """Compel's provider reading the hidden states the way ``prompts._encode_one`` does."""

        clip_skip = 1
        penultimate = False  # SDXL-style: hidden_states[-(clip_skip + 1)], not normalised

        def _encode_token_ids_to_embeddings(self, token_ids, attention_mask=None):
            out = self.text_encoder(
                token_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            if self.penultimate:
                return out.hidden_states[-(self.clip_skip + 1)]
            if self.clip_skip <= 1:
                return out.last_hidden_state
            hidden = out.hidden_states[-self.clip_skip]
            return final_layer_norm(self.text_encoder)(hidden)

    return ClipSkipProvider


def encode_weighted(
    tokenizer: Any,
    text_encoder: Any,
    fragments: list[tuple[str, float]],
    clip_skip: int,
    penultimate: bool,
    length: int,
) -> torch.Tensor:
    """Weighted hidden states of one encoder, as chunks: (chunks, length, dim)."""
    from compel.embeddings_provider import SplitLongTextMode

    provider = _provider_class()(
        tokenizer,
        text_encoder,
        truncate=False,
        split_long_text_mode=SplitLongTextMode.BRUTAL,
        model_max_length=length,
        dtype_for_device_getter=lambda _device: text_encoder.dtype,
        device=str(text_encoder.device),
    )
    provider.clip_skip = clip_skip
    provider.penultimate = penultimate
    texts = [fragment for fragment, _ in fragments]
    weights = [weight for _, weight in fragments]
    embeddings = provider.get_embeddings_for_weighted_prompt_fragments(
        text_batch=[texts], fragment_weights_batch=[weights], device=str(text_encoder.device)
    )
    return embeddings.reshape(-1, length, embeddings.shape[-1])
