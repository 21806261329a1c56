"""Prompt syntax (#18): comments, <lora:...> tags, {a|b} wildcards and A1111 emphasis through
compel, from the parser to the pixels and back into the result's metadata."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backend.engine.engine import Engine  # noqa: E402
from backend.engine.errors import EngineError, InvalidRequest  # noqa: E402
from backend.engine.prompt_syntax import (  # noqa: E402
    expand_wildcards,
    extract_loras,
    plan_prompts,
    strip_comments,
)
from backend.engine.prompt_weights import emphasis_record, parse_emphasis  # noqa: E402
from backend.engine.types import EngineConfig, GenerationRequest, LoraInput  # noqa: E402

# --- the parsers ------------------------------------------------------------------------------


def test_comments_run_to_the_end_of_the_line():
    text = "a fox # the subject\n(snow:1.2) \\# not a comment # but this is"
    assert strip_comments(text) == "a fox\n(snow:1.2) \\# not a comment"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(word:1.2)", [("word", 1.2)]),
        ("((word))", [("word", pytest.approx(1.21))]),
        ("[word]", [("word", pytest.approx(1 / 1.1))]),
        ("a (b:0.5) c", [("a ", 1.0), ("b", 0.5), (" c", 1.0)]),
        ("\\(literal\\)", [("(literal)", 1.0)]),
        ("((a), b:1.5)", [("a", pytest.approx(1.65)), (", b", 1.5)]),
        ("no emphasis", [("no emphasis", 1.0)]),
    ],
)
def test_a1111_emphasis_becomes_fragments_and_weights(text, expected):
    assert parse_emphasis(text) == expected


def test_emphasis_goes_into_the_metadata_record():
    assert emphasis_record("a (red:1.3) fox, [snow]") == [
        ["red", 1.3],
        ["snow", pytest.approx(0.9091, abs=1e-4)],
    ]


def test_lora_tags_are_taken_out_with_their_weights():
    text, tags = extract_loras("a fox, <lora:film:0.8> in <LORA:sub/grain>", "prompt")
    assert text == "a fox, in"
    assert [(name, weight) for name, weight, _ in tags] == [("film", 0.8), ("sub/grain", 1.0)]


@pytest.mark.parametrize("tag", ["<lora:film:abc>", "<lora::1>", "<lora:film:9>", "<lora:a:1:2>"])
def test_malformed_lora_tags_name_the_prompt(tag):
    with pytest.raises(InvalidRequest) as info:
        extract_loras(f"a fox {tag}", "prompt")
    assert info.value.field == "prompt" and tag in info.value.message


def test_wildcards_are_reproducible_from_the_seed_and_use_every_option():
    text = "a {red|green|blue} fox on {snow|{sand|grass}}"
    assert expand_wildcards(text, 7) == expand_wildcards(text, 7)
    seen = {expand_wildcards(text, seed)[0] for seed in range(60)}
    assert {p.split()[1] for p in seen} == {"red", "green", "blue"}
    assert {p.split()[-1] for p in seen} == {"snow", "sand", "grass"}
    prompt, chosen = expand_wildcards(text, 3)
    assert prompt == f"a {chosen[0]} fox on {chosen[1]}"
    assert expand_wildcards("\\{a\\|b\\} {solo}", 1) == ("{a|b} {solo}", [])


def test_plan_resolves_tags_against_the_installed_loras():
    plan = plan_prompts(
        "x <lora:grain:0.5> <lora:film:0.3>",
        "",
        [LoraInput("film", 1.0)],
        [5, 6],
        ["styles/grain", "film"],
    )
    assert [(lo.name, lo.weight, lo.field) for lo in plan.loras] == [
        ("styles/grain", 0.5, "prompt"),
        ("film", 0.3, "prompt"),  # the tag wins over the list's entry
    ]
    with pytest.raises(InvalidRequest) as info:
        plan_prompts("x <lora:nowhere:1>", "", [], [1], ["film"])
    assert info.value.field == "prompt" and "nowhere" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        plan_prompts("x", "<lora:nowhere>", [], [1], ["film"])
    assert info.value.field == "negative_prompt"


# --- through the engine (tiny models) ---------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> Engine:
    return Engine(EngineConfig(device="cpu", dtype="float32", tiny_dir=str(tiny_models_dir)))


def run(engine: Engine, model: str = "tiny", **changes: object):
    fields: dict = {
        "mode": "txt2img",
        "width": 64,
        "height": 64,
        "prompt": "a fox in the snow",
        "steps": 2,
        "seed": 11,
        "model": model,
    }
    fields.update(changes)
    return engine.generate(GenerationRequest(**fields))


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_emphasis_changes_the_picture_and_weight_one_does_not(engine, model):
    plain = run(engine, model)[0]
    same = run(engine, model, prompt="a (fox:1.0) in the snow # comment")[0]
    strong = run(engine, model, prompt="a (fox:1.6) in the snow")[0]
    assert np.array_equal(plain.image, same.image)
    assert not np.array_equal(plain.image, strong.image)
    meta = strong.metadata
    assert meta.prompt == "a (fox:1.6) in the snow"
    assert meta.resolved["weights"] == [["fox", 1.6]]


def test_a_long_weighted_prompt_keeps_working(engine):
    long = ", ".join(["a (red:1.3) fox in deep snow"] * 30)  # > 3 chunks of 75 tokens
    layer = run(engine, prompt=long, negative_prompt="[blurry]")[0]
    assert layer.image.shape == (64, 64, 4)


def test_a_lora_tag_is_the_same_as_the_lora_list(engine):
    tagged = run(engine, prompt="a fox in the snow <lora:tiny-lora:0.8>")[0]
    listed = run(engine, loras=[LoraInput("tiny-lora", 0.8)])[0]
    assert np.array_equal(tagged.image, listed.image)
    assert tagged.metadata.loras == [{"name": "tiny-lora", "weight": 0.8}]
    assert tagged.metadata.prompt == "a fox in the snow"
    assert tagged.metadata.resolved["prompt_typed"].endswith("<lora:tiny-lora:0.8>")


def test_lora_tags_are_checked_at_submit_on_the_prompt(engine):
    for prompt, model in (("a <lora:missing:1>", "tiny"), ("a <lora:tiny-lora:1>", "tiny-sdxl")):
        request = GenerationRequest(
            mode="txt2img", width=64, height=64, prompt=prompt, model=model, steps=2
        )
        with pytest.raises(EngineError) as info:
            engine.check_request(request)
        assert info.value.field == "prompt", info.value.message


def test_wildcards_per_batch_item_match_single_runs(engine):
    prompt = "a {red|green|blue|white|black|grey} fox"
    batch = run(engine, prompt=prompt, batch=3, seed=40)
    for index, layer in enumerate(batch):
        alone = run(engine, prompt=prompt, seed=40 + index)[0]
        assert np.array_equal(layer.image, alone.image)
        chosen = layer.metadata.resolved["wildcards"]
        assert layer.metadata.prompt == f"a {chosen[0]} fox"
        assert alone.metadata.resolved["wildcards"] == chosen
