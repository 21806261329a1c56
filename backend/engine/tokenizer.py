"""Real CLIP BPE tokenizers built from open_clip's vocabulary file, without any download.

open_clip ships ``bpe_simple_vocab_16e6.txt.gz`` (the merges CLIP was trained with). From it we
write the Hugging Face tokenizer files (vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json) once into a cache folder and load a ``CLIPTokenizer`` from there.
open_clip itself is never imported (it imports torchvision): we only locate its package folder.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from backend.engine.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MERGE_COUNT = 49152 - 256 - 2  # CLIP keeps the first 48894 merges
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
PAD_TOKENS = {"endoftext": END_TOKEN, "bang": "!"}
INSTALL_HINT = "run `pip install --no-deps open_clip_torch` in the backend's Python environment"


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable unicode table GPT-2 and CLIP use for byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(code) for code in codes], strict=True))


def find_bpe_file() -> Path:
    """Locate open_clip's BPE merges file without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The CLIP tokenizer vocabulary is missing: {INSTALL_HINT}.")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BPE_FILE_NAME
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"The CLIP tokenizer vocabulary ({BPE_FILE_NAME}) is missing from open_clip: {INSTALL_HINT}."
    )


def read_merges(bpe_file: Path) -> list[tuple[str, str]]:
    """The first MERGE_COUNT merges of the file (its first line is a version header)."""
    try:
        lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"Cannot read the CLIP vocabulary {bpe_file}: {exc}") from exc
    selected = lines[1 : MERGE_COUNT + 1]
    if len(selected) != MERGE_COUNT:
        raise ModelLoadError(
            f"The CLIP vocabulary {bpe_file} has {len(selected)} merges, expected {MERGE_COUNT}."
        )
    merges: list[tuple[str, str]] = []
    for line in selected:
        left, right = line.split()
        merges.append((left, right))
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Bytes, bytes + "</w>", every merge, then the two special tokens: 49408 entries."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens.extend(left + right for left, right in merges)
    tokens.extend([START_TOKEN, END_TOKEN])
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ModelLoadError(f"CLIP vocabulary has {len(vocab)} entries, expected {VOCAB_SIZE}.")
    return vocab


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diffusion-layers" / "tokenizers"


def write_tokenizer_files(directory: Path, pad_token: str) -> None:
    """Write the Hugging Face CLIP tokenizer files for ``pad_token`` into ``directory``."""
    merges = read_merges(find_bpe_file())
    vocab = build_vocab(merges)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    merge_lines = ["#version: 0.2"] + [f"{left} {right}" for left, right in merges]
    (directory / "merges.txt").write_text("\n".join(merge_lines) + "\n", "utf-8")
    special = {
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": pad_token,
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2), "utf-8")
    config = dict(
        special,
        tokenizer_class="CLIPTokenizer",
        model_max_length=77,
        do_lower_case=True,
        errors="replace",
        add_prefix_space=False,
        clean_up_tokenization_spaces=True,
    )
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), "utf-8")


def ensure_tokenizer_dir(pad: str = "endoftext", cache_dir: str | Path | None = None) -> Path:
    """The folder holding the tokenizer files for ``pad`` ("endoftext" or "bang"), written once."""
    if pad not in PAD_TOKENS:
        raise ValueError(f"pad={pad!r}: expected one of {sorted(PAD_TOKENS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"clip-pad-{pad}"
    if (target / "tokenizer_config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".clip-", dir=root))
    try:
        write_tokenizer_files(staging, PAD_TOKENS[pad])
        try:
            staging.rename(target)
        except OSError:
            if not (target / "tokenizer_config.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def copy_tokenizer_files(pad: str, destination: Path, cache_dir: str | Path | None = None) -> None:
    """Copy the tokenizer files into ``destination`` (e.g. a config folder's tokenizer/)."""
    source = ensure_tokenizer_dir(pad, cache_dir)
    destination.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        shutil.copy2(item, destination / item.name)


def load_clip_tokenizer(
    pad: str = "endoftext", cache_dir: str | Path | None = None
) -> CLIPTokenizer:
    """A real CLIP BPE tokenizer: pad "endoftext" (SD1.5, SDXL's first) or "bang" (SDXL's second)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(ensure_tokenizer_dir(pad, cache_dir)))
