"""Prompt encoding: equal to diffusers for short prompts, never cut, cached."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from backend.engine.errors import InvalidRequest  # noqa: E402
from backend.engine.prompts import PromptEncoder, chunk_token_ids  # noqa: E402

LONG_PROMPT = " ".join(f"word{i % 40} red blue" for i in range(67))  # about 200 tokens


@pytest.fixture(scope="module")
def sd15() -> Any:
    from backend.engine.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15")


@pytest.fixture(scope="module")
def sdxl() -> Any:
    from backend.engine.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl")


def clip_skip_reference(pipe: Any, prompt: str, skip: int) -> torch.Tensor:
    """diffusers' encode_prompt(clip_skip=skip) by hand: the hidden state ``skip`` layers
    before the last, through the final LayerNorm (its own code needs CLIPTextModel.text_model,
    which transformers 5 removed)."""
    from backend.engine.clip_layout import final_layer_norm

    tokenizer = pipe.tokenizer
    ids = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-(skip + 1)]
        return final_layer_norm(pipe.text_encoder)(hidden)


def test_short_prompt_matches_diffusers_sd15(sd15: Any) -> None:
    encoder = PromptEncoder()
    for clip_skip, diffusers_skip in ((1, None), (2, 1)):
        ours = encoder.encode(
            sd15, "a red cat", "blurry", model="t", family="sd15", clip_skip=clip_skip
        )
        positive, negative = sd15.encode_prompt("a red cat", "cpu", 1, True, "blurry")
        if diffusers_skip is not None:  # diffusers 0.42's own clip_skip reads text_model
            positive = clip_skip_reference(sd15, "a red cat", diffusers_skip)  # (transformers 5)
        assert torch.equal(ours.prompt_embeds, positive)
        if diffusers_skip is None:  # diffusers skips layers of the positive prompt only
            assert torch.equal(ours.negative_prompt_embeds, negative)
        assert ours.pooled_prompt_embeds is None
    skipped = encoder.encode(sd15, "blurry", "", model="t", family="sd15", clip_skip=2)
    assert torch.equal(ours.negative_prompt_embeds, skipped.prompt_embeds)


def test_short_prompt_matches_diffusers_sdxl(sdxl: Any) -> None:
    ours = PromptEncoder().encode(sdxl, "a red cat", "blurry", model="x", family="sdxl")
    positive, negative, pooled, negative_pooled = sdxl.encode_prompt(
        "a red cat", device="cpu", negative_prompt="blurry"
    )
    assert torch.equal(ours.prompt_embeds, positive)
    assert torch.equal(ours.negative_prompt_embeds, negative)
    assert torch.equal(ours.pooled_prompt_embeds, pooled)
    assert torch.equal(ours.negative_pooled_prompt_embeds, negative_pooled)
    kwargs = ours.pipeline_kwargs()
    assert set(kwargs) == {
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    }


def test_sdxl_empty_negative_is_zeros(sdxl: Any) -> None:
    ours = PromptEncoder().encode(sdxl, "a cat", "", model="x", family="sdxl")
    assert not ours.negative_prompt_embeds.any()
    assert not ours.negative_pooled_prompt_embeds.any()


def test_chunks_keep_every_token(sd15: Any) -> None:
    tokenizer = sd15.tokenizer
    ids = tokenizer(LONG_PROMPT, add_special_tokens=False, verbose=False).input_ids
    assert len(ids) > 150
    chunks = chunk_token_ids(tokenizer, LONG_PROMPT, 77)
    assert len(chunks) == -(-len(ids) // 75)
    assert all(len(chunk) == 77 for chunk in chunks)
    assert all(chunk[0] == tokenizer.bos_token_id for chunk in chunks)
    body = [t for chunk in chunks for t in chunk[1:] if t != tokenizer.eos_token_id]
    assert body[: len(ids)] == ids  # nothing cut, order kept
    assert chunk_token_ids(tokenizer, "", 77) == [
        [tokenizer.bos_token_id, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * 75
    ]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_long_prompt_is_not_cut(family: str, sd15: Any, sdxl: Any) -> None:
    pipe = sd15 if family == "sd15" else sdxl
    encoder = PromptEncoder()
    long = encoder.encode(pipe, LONG_PROMPT, "ugly", model="m", family=family)
    chunks = len(chunk_token_ids(pipe.tokenizer, LONG_PROMPT, 77))
    assert chunks >= 3
    assert long.prompt_embeds.shape[1] == 77 * chunks
    # the negative is padded to the same length
    assert long.negative_prompt_embeds.shape == long.prompt_embeds.shape
    # the first chunk is exactly the encoding of the prompt cut at 75 tokens ...
    ids = pipe.tokenizer(LONG_PROMPT, add_special_tokens=False, verbose=False).input_ids
    cut_text = pipe.tokenizer.decode(ids[:75])
    cut = encoder.encode(pipe, cut_text, "ugly", model="m", family=family)
    assert torch.allclose(long.prompt_embeds[:, :77], cut.prompt_embeds, atol=1e-5)
    # ... and the rest carries the remaining words (it differs from an empty chunk)
    empty = encoder.encode(pipe, "", "", model="m", family=family)
    assert not torch.allclose(long.prompt_embeds[:, 77:154], empty.prompt_embeds, atol=1e-3)


def test_cache_skips_the_text_encoder(sd15: Any) -> None:
    encoder = PromptEncoder(cache_size=8)
    first = encoder.encode(sd15, "a cat", "ugly", model="m", family="sd15")
    calls = encoder.encoder_calls
    again = encoder.encode(sd15, "a cat", "ugly", model="m", family="sd15")
    assert encoder.encoder_calls == calls
    assert torch.equal(first.prompt_embeds, again.prompt_embeds)
    # clip skip, model and LoRA variant are part of the key
    encoder.encode(sd15, "a cat", "ugly", model="m", family="sd15", clip_skip=2)
    assert encoder.encoder_calls == calls + 3  # prompt, negative and the empty pad chunk
    encoder.encode(sd15, "a cat", "ugly", model="m", family="sd15", variant="tiny-lora:1")
    assert encoder.encoder_calls == calls + 6
    encoder.encode(sd15, "a cat", "ugly", model="other", family="sd15")
    assert encoder.encoder_calls == calls + 9
    encoder.clear("m")
    encoder.encode(sd15, "a cat", "ugly", model="other", family="sd15")
    assert encoder.encoder_calls == calls + 9
    encoder.encode(sd15, "a cat", "ugly", model="m", family="sd15")
    assert encoder.encoder_calls == calls + 12


def test_cache_is_bounded(sd15: Any) -> None:
    encoder = PromptEncoder(cache_size=2)
    for text in ("one", "two", "three"):
        encoder.encode(sd15, text, text, model="m", family="sd15")
    calls = encoder.encoder_calls
    encoder.encode(sd15, "one", "one", model="m", family="sd15")  # evicted: encoded again
    assert encoder.encoder_calls > calls


def test_bad_arguments(sd15: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        PromptEncoder().encode(sd15, "a", "", model="m", family="sd15", clip_skip=0)
    assert info.value.field == "clip_skip"
    with pytest.raises(InvalidRequest):
        PromptEncoder(cache_size=-1)
