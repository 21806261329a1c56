"""Prompt text to CLIP embeddings: no 77-token limit, clip skip, SDXL's two encoders, LRU cache.

Long prompts are never cut. The token ids (without BOS/EOS) are split into chunks of
``model_max_length - 2`` (75 for CLIP); each chunk is wrapped in BOS ... EOS, padded and
encoded on its own, and the chunk encodings are concatenated along the sequence axis. The
negative prompt is padded with empty chunks to the same chunk count so classifier-free guidance
sees equal shapes. SDXL concatenates both encoders' hidden states along the feature axis and
takes the pooled embedding from the first chunk of the second encoder.

``clip_skip`` follows the A1111 convention: 1 = the last layer, 2 = the penultimate one, ...
(SDXL always starts from the penultimate layer, as diffusers does).

Encoding a prompt costs a text-encoder pass per chunk; live painting repeats the same prompt
every stroke, so encodings are cached per (model, LoRA set, text, clip_skip).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from backend.engine import families
from backend.engine.clip_layout import final_layer_norm
from backend.engine.errors import InvalidRequest
from backend.engine.prompt_weights import encode_weighted, is_weighted, parse_emphasis, plain_text

DEFAULT_CACHE_SIZE = 64


@dataclass
class PromptEmbeds:
    """What the pipelines take instead of prompt strings (one prompt, batch dimension 1)."""

    prompt_embeds: torch.Tensor  # (1, chunks * max_length, dim)
    negative_prompt_embeds: torch.Tensor  # same shape
    pooled_prompt_embeds: torch.Tensor | None = None  # SDXL only: (1, dim2)
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        kwargs = {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
        }
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            assert self.negative_pooled_prompt_embeds is not None
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return kwargs


@dataclass
class _Encoded:
    """One text encoded by every encoder of a model: per-chunk hidden states."""

    chunks: torch.Tensor  # (chunks, max_length, dim) - all encoders concatenated on dim
    pooled: torch.Tensor | None  # (1, dim2) from the first chunk (SDXL)


def max_length(tokenizer: Any, text_encoder: Any) -> int:
    """The encoder's sequence length: the tokenizer's, capped by the position embeddings."""
    length = int(getattr(tokenizer, "model_max_length", 77) or 77)
    positions = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
    if positions:
        length = min(length, int(positions))
    if length < 3:
        raise InvalidRequest("tokenizer.model_max_length", length, "must be at least 3")
    return length


def chunk_token_ids(tokenizer: Any, text: str, length: int) -> list[list[int]]:
    """Token ids of ``text`` in chunks of ``length``: BOS + up to length-2 tokens + EOS + pad.

    Always at least one chunk (the empty prompt is BOS EOS pad...).
    """
    ids = list(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    body = length - 2
    pieces = [ids[i : i + body] for i in range(0, len(ids), body)] or [[]]
    return [[bos, *piece, eos] + [pad] * (body - len(piece)) for piece in pieces]


def _encode_one(
    tokenizer: Any, text_encoder: Any, text: str, clip_skip: int, sdxl: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states (chunks, length, dim) of one encoder, plus its pooled output if it has
    a projection (the first chunk's)."""
    length = max_length(tokenizer, text_encoder)
    ids = torch.tensor(chunk_token_ids(tokenizer, text, length), device=text_encoder.device)
    out = text_encoder(ids, output_hidden_states=True)
    if sdxl:
        hidden = out.hidden_states[-(clip_skip + 1)]
    elif clip_skip <= 1:
        hidden = out[0]
    else:
        hidden = out.hidden_states[-clip_skip]
        hidden = final_layer_norm(text_encoder)(hidden)
    pooled = None
    first = out[0]
    if first.ndim == 2:  # CLIPTextModelWithProjection: text_embeds (chunks, proj_dim)
        pooled = first[:1]
    return hidden, pooled


class PromptEncoder:
    """Encodes prompts for a loaded pipeline, caching recent encodings (LRU)."""

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 0:
            raise InvalidRequest("cache_size", cache_size, "must be >= 0")
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, _Encoded] = OrderedDict()
        self.encoder_calls = 0  # text-encoder passes made (cache misses), for tests and stats

    def clear(self, model: str | None = None) -> None:
        """Forget cached encodings (of one model, or all)."""
        if model is None:
            self._cache.clear()
            return
        for key in [k for k in self._cache if k[0] == model]:
            del self._cache[key]

    def encode(
        self,
        pipe: Any,
        prompt: str,
        negative_prompt: str,
        *,
        model: str,
        family: str,
        clip_skip: int = 1,
        variant: str = "",
    ) -> PromptEmbeds:
        """Embeddings of ``prompt`` / ``negative_prompt`` for ``pipe``'s text encoder(s).

        ``variant`` names whatever else changes the text encoder (the applied LoRAs) so the
        cache never returns an encoding made with other weights.
        """
        if clip_skip < 1:
            raise InvalidRequest("clip_skip", clip_skip, "must be >= 1")
        hook = families.get(family).encode
        if hook is not None:  # a transformer family encodes with its own pipeline (Flux, ...)
            # Emphasis is CLIP-only (compel): the brackets are removed, the weights ignored.
            positive_text = plain_text(parse_emphasis(prompt))
            return hook(pipe, positive_text, plain_text(parse_emphasis(negative_prompt)))
        sdxl = families.get(family).pooled  # two encoders, pooled output (SDXL)
        positive = self._cached(pipe, prompt, model, sdxl, clip_skip, variant)
        negative = self._cached(pipe, negative_prompt, model, sdxl, clip_skip, variant)
        zero_negative = (
            sdxl
            and not negative_prompt
            and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
        )
        # 1. equal chunk counts: pad the shorter side with empty-prompt chunks
        count = max(positive.chunks.shape[0], negative.chunks.shape[0])
        empty = self._cached(pipe, "", model, sdxl, clip_skip, variant)
        pos_chunks = _pad_chunks(positive.chunks, empty.chunks, count)
        neg_chunks = _pad_chunks(negative.chunks, empty.chunks, count)
        # 2. chunks side by side along the sequence axis
        prompt_embeds = pos_chunks.reshape(1, -1, pos_chunks.shape[-1])
        negative_embeds = neg_chunks.reshape(1, -1, neg_chunks.shape[-1])
        if zero_negative:
            negative_embeds = torch.zeros_like(negative_embeds)
        if not sdxl:
            return PromptEmbeds(prompt_embeds, negative_embeds)
        assert positive.pooled is not None and negative.pooled is not None
        negative_pooled = torch.zeros_like(negative.pooled) if zero_negative else negative.pooled
        return PromptEmbeds(prompt_embeds, negative_embeds, positive.pooled, negative_pooled)

    def _cached(
        self, pipe: Any, text: str, model: str, sdxl: bool, clip_skip: int, variant: str
    ) -> _Encoded:
        key = (model, variant, text, clip_skip)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        encoded = self._encode(pipe, text, sdxl, clip_skip)
        if self.cache_size:
            self._cache[key] = encoded
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return encoded

    def _encode(self, pipe: Any, text: str, sdxl: bool, clip_skip: int) -> _Encoded:
        pairs = [(pipe.tokenizer, pipe.text_encoder)]
        if sdxl:
            pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
        pairs = [(tok, enc) for tok, enc in pairs if tok is not None and enc is not None]
        if not pairs:
            raise InvalidRequest("model", type(pipe).__name__, "has no text encoder")
        hidden: list[torch.Tensor] = []
        pooled = None
        # Emphasis ((word:1.2), [word]) goes through compel (prompt_weights.py); the pooled
        # output stays the plain text's, as compel's is.
        fragments = parse_emphasis(text)
        text = plain_text(fragments)
        with torch.inference_mode():
            for tokenizer, text_encoder in pairs:
                states, pooled_out = _encode_one(tokenizer, text_encoder, text, clip_skip, sdxl)
                if is_weighted(fragments):
                    length = max_length(tokenizer, text_encoder)
                    states = encode_weighted(
                        tokenizer, text_encoder, fragments, clip_skip, sdxl, length
                    )
                hidden.append(states)
                pooled = pooled_out if pooled_out is not None else pooled
        self.encoder_calls += 1
        # the two SDXL encoders chunk the same text identically only if their tokenizers
        # agree; they share CLIP's BPE vocabulary, so the chunk counts match
        count = min(h.shape[0] for h in hidden)
        joined = torch.cat([h[:count] for h in hidden], dim=-1)
        return _Encoded(joined, pooled)


def _pad_chunks(chunks: torch.Tensor, empty: torch.Tensor, count: int) -> torch.Tensor:
    missing = count - chunks.shape[0]
    if missing <= 0:
        return chunks
    return torch.cat([chunks, empty[:1].expand(missing, *empty.shape[1:])], dim=0)
