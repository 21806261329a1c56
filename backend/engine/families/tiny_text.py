"""Tiny T5 and Qwen3 text encoders with tiny tokenizers, built offline (tests, CI, demos).

Flux.1 encodes prompts with CLIP-L and T5-XXL, Z-Image with Qwen3-4B. Their real tokenizers are
data files from the Hub; for the tiny models we build equivalent ``tokenizers`` objects in code:
a word-level Unigram model for T5 (``</s>`` at the end, ``<pad>`` padding, as T5 does) and a
byte-level BPE for Qwen with the chat template Z-Image's pipeline applies. Weights are seeded.
"""

from __future__ import annotations

import copy
import string
from typing import Any

T5_HIDDEN = 32
QWEN_HIDDEN = 32

#: The chat template Z-Image's pipeline runs every prompt through (Qwen3's, shortened to what
#: a single user message with ``add_generation_prompt`` and ``enable_thinking`` needs).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

_T5: dict[str, Any] = {
    "d_model": T5_HIDDEN,
    "d_ff": 64,
    "d_kv": 8,
    "num_heads": 4,
    "num_layers": 2,
    "vocab_size": 512,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "layer_norm_epsilon": 1e-6,
    "dense_act_fn": "gelu_new",
    "is_gated_act": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
    "tie_word_embeddings": False,
}

_QWEN: dict[str, Any] = {
    "hidden_size": QWEN_HIDDEN,
    "intermediate_size": 64,
    "num_hidden_layers": 3,  # the pipeline takes the second-to-last hidden state
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 512,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


def t5_config() -> dict[str, Any]:
    return copy.deepcopy(_T5)


def qwen_config() -> dict[str, Any]:
    return copy.deepcopy(_QWEN)


def _words() -> list[str]:
    """A small fixed vocabulary: letters, digits, punctuation and common prompt words."""
    common = (
        "a an the of in on with and cat dog red blue green photo painting portrait landscape "
        "sky tree house forest mountain water light dark girl boy man woman face eye hand "
        "detailed masterpiece best quality sketch anime style color big small old new"
    ).split()
    return list(string.ascii_lowercase) + list(string.digits) + list("!,.:;-()") + common


def build_t5_tokenizer() -> Any:
    """A T5TokenizerFast on a tiny Unigram model (``<pad>``=0, ``</s>``=1, ``<unk>``=2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = _words()
    pieces += [("▁" + word, -1.0 - 0.01 * i) for i, word in enumerate(words)]
    pieces += [(word, -5.0 - 0.01 * i) for i, word in enumerate(words)]
    pieces += [("▁", -3.0)]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=512,
    )


def build_qwen_tokenizer() -> Any:
    """A Qwen2TokenizerFast on a tiny byte-level BPE, with the chat template and specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    from backend.engine.tokenizer import bytes_to_unicode

    alphabet = sorted(set(bytes_to_unicode().values()))
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]}
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build_t5_encoder(seed: int = 0) -> Any:
    from transformers import T5Config, T5EncoderModel

    _seeded(seed)
    return T5EncoderModel(T5Config(**t5_config())).eval()


def build_qwen_encoder(seed: int = 0) -> Any:
    from transformers import Qwen3Config, Qwen3Model

    _seeded(seed)
    return Qwen3Model(Qwen3Config(**qwen_config())).eval()
