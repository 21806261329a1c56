"""LoRA formats (issue 13, kind 7): what diffusers loads runs and unloads bit-exactly; what it
cannot load is listed with a reason and refused at submit on ``loras[i].name``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_files import diffusers_state, fake_file, locon_state, lycoris_state, save

from backend.engine.engine import Engine
from backend.engine.errors import InvalidRequest
from backend.engine.lora import kohya_lora_state_dict
from backend.engine.lora_formats import lora_facts
from backend.engine.model_manager import ModelManager
from backend.engine.tiny import build_tiny_pipeline
from backend.engine.types import EngineConfig, GenerationRequest, LoraInput

SD15 = {"ss_base_model_version": "sd_v1"}
SPEC_SD15 = {"modelspec.architecture": "stable-diffusion-v1/lora"}


@pytest.fixture(scope="module")
def engine(tiny_models_dir, tmp_path_factory) -> Engine:
    root = tmp_path_factory.mktemp("lora-formats")
    pipe = build_tiny_pipeline("sd15")
    save(locon_state(pipe), root / "lora" / "tiny-locon.safetensors", SD15)
    save(diffusers_state(pipe), root / "lora" / "tiny-peft.safetensors", SPEC_SD15)
    save(lycoris_state(pipe, "loha"), root / "lora" / "tiny-loha.safetensors", SD15)
    save(lycoris_state(pipe, "lokr"), root / "lora" / "tiny-lokr.safetensors", SD15)
    qkv_only = {k: v for k, v in kohya_lora_state_dict(pipe, seed=6).items() if "out_proj" not in k}
    save(qkv_only, root / "lora" / "tiny-qkv.safetensors", SD15)
    fake_file(root / "lora" / "mystery.safetensors", {"something.weight": (4, 4)})
    conv = "lora_unet_down_blocks_0_resnets_0_conv1"
    fake_file(
        root / "lora" / "conv-lokr.safetensors",
        {f"{conv}.lokr_w1": (4, 4), f"{conv}.lokr_w2": (8, 8, 3, 3)},
        SD15,
    )
    attn = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"
    fake_file(
        root / "lora" / "tiny-ia3.safetensors",
        {f"{attn}.weight": (32,), f"{attn}.on_input": ()},
        SD15,
    )
    config = EngineConfig(models_dir=str(root), tiny_dir=str(tiny_models_dir), device="cpu")
    return Engine(config, ModelManager(config))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def render(models: ModelManager, loras: list[LoraInput]) -> np.ndarray:
    loaded = models.checkpoint("tiny")
    with models.loras_applied(loaded, loras):
        generator = torch.Generator().manual_seed(5)
        return loaded.pipe(
            "a green field",
            num_inference_steps=2,
            height=64,
            width=64,
            output_type="np",
            generator=generator,
        ).images[0]


def request(lora: str) -> GenerationRequest:
    return GenerationRequest("txt2img", 64, 64, model="tiny", steps=2, loras=[LoraInput(lora)])


def test_the_inventory_tells_every_loras_format_and_family(engine) -> None:
    entries = {entry.name: entry for entry in engine.inventory().loras}
    assert (entries["tiny-locon"].format, entries["tiny-locon"].family) == ("locon", "sd15")
    assert (entries["tiny-peft"].format, entries["tiny-peft"].family) == ("diffusers", "sd15")
    assert entries["tiny-locon"].text_width == 32 and entries["tiny-locon"].problem is None
    assert entries["tiny-loha"].format == "loha" and entries["tiny-loha"].problem is None
    assert entries["tiny-lokr"].format == "lokr" and entries["tiny-lokr"].problem is None
    assert entries["tiny-lokr"].text_width == 32
    assert entries["mystery"].problem is not None


@pytest.mark.parametrize("name", ["tiny-locon", "tiny-peft", "tiny-loha", "tiny-lokr", "tiny-qkv"])
def test_loadable_formats_change_the_output_and_unload_bit_exactly(engine, name) -> None:
    models = engine.models
    loaded = models.checkpoint("tiny")
    before_unet, before_text = snapshot(loaded.pipe.unet), snapshot(loaded.pipe.text_encoder)
    plain = render(models, [])
    changed = render(models, [LoraInput(name, 1.0)])
    assert np.abs(changed - plain).max() > 0.01
    for before, module in (
        (before_unet, loaded.pipe.unet),
        (before_text, loaded.pipe.text_encoder),
    ):
        after = module.state_dict()
        assert set(after) == set(before)
        assert all(torch.equal(after[key], value) for key, value in before.items())
    np.testing.assert_array_equal(render(models, []), plain)
    engine.check_request(request(name))  # accepted at submit


def test_locon_changes_more_than_its_attention_part(engine) -> None:
    """The conv pairs are applied, not dropped: LoCon differs from its attention-only part."""
    pipe = build_tiny_pipeline("sd15")
    attention_only = {k: v for k, v in locon_state(pipe).items() if "resnets" not in k}
    root = engine.config.models_dir
    save(attention_only, __import__("pathlib").Path(root) / "lora" / "tiny-attn.safetensors", SD15)
    engine.models.inventory(refresh=True)
    full = render(engine.models, [LoraInput("tiny-locon")])
    part = render(engine.models, [LoraInput("tiny-attn")])
    assert np.abs(full - part).max() > 0.01


@pytest.mark.parametrize(("name", "words"), [("conv-lokr", "LoKr"), ("tiny-ia3", "(IA)^3")])
def test_lycoris_formats_are_refused_at_submit_naming_the_format(engine, name, words) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.check_request(request(name))
    assert info.value.field == "loras[0].name"
    assert words in info.value.message and "LoRA or LoCon" in info.value.message


def test_a_lora_of_unknown_layout_is_refused_at_submit(engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.check_request(request("mystery"))
    assert info.value.field == "loras[0].name" and "LoRA weights" in info.value.message


def test_a_lora_for_another_text_width_is_refused_at_submit(engine, tmp_path) -> None:
    """A real-size SD1.5 LoRA (text width 768) on the tiny SD1.5 model (32)."""
    path = engine.config.models_dir + "/lora/full-size.safetensors"
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    fake_file(
        __import__("pathlib").Path(path),
        {f"{base}.lora_down.weight": (4, 768), f"{base}.lora_up.weight": (32, 4)},
        SD15,
    )
    engine.models.inventory(refresh=True)
    with pytest.raises(InvalidRequest, match="text width 768") as info:
        engine.check_request(request("full-size"))
    assert info.value.field == "loras[0].name"


@pytest.mark.parametrize(
    ("keys", "metadata", "family", "fmt"),
    [
        (
            {"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)},
            {},
            "sdxl",
            "lora",
        ),
        (
            {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 768)},
            {},
            "sd15",
            "lora",
        ),
        (
            {
                "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (
                    8,
                    2048,
                )
            },
            {},
            "sdxl",
            "lora",
        ),
        (
            {
                "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (
                    4,
                    768,
                )
            },
            {},
            "sd15",
            "diffusers",
        ),
        (
            {"x.lora_down.weight": (4, 4)},
            {"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"},
            "sdxl",
            "unknown",
        ),
        (
            {
                "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": (
                    4,
                    320,
                )
            },
            {},
            "sd15",
            "diffusers",
        ),
        (
            {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)},
            {},
            "sd15",
            "lora",
        ),
        (
            {"lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight": (4, 640)},
            {},
            None,
            "lora",
        ),
    ],
)
def test_format_and_family_from_keys(keys, metadata, family, fmt) -> None:
    facts = lora_facts(keys, metadata, "x")
    assert (facts.family, facts.format) == (family, fmt)


@pytest.mark.parametrize(
    ("keys", "metadata", "words"),
    [
        (
            {
                "lora_unet_x_attn2_to_k.lora_down.weight": (4, 1024),
                "lora_te_y.lora_down.weight": (4, 1024),
            },
            {},
            "2.x",
        ),
        ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": (4, 1536)}, {}, "SD3"),
        (
            {"lora_unet_x_attn2_to_k.lora_down.weight": (4, 768)},
            {"ss_base_model_version": "sd_v2"},
            "2.x",
        ),
        ({"lora_unet_x_conv.lora_down.weight": (4, 320, 3, 3)}, {}, "cannot tell"),
    ],
)
def test_other_families_and_unknown_families_are_marked(keys, metadata, words) -> None:
    facts = lora_facts(keys, metadata, "x")
    assert facts.problem is not None and words in facts.problem


@pytest.mark.parametrize(
    ("kind", "weight"), [("loha", 1.0), ("loha", 0.5), ("lokr", 1.0), ("lokr", 0.5)]
)
def test_lycoris_files_match_the_lycoris_definition(engine, kind, weight) -> None:
    """The adapter's picture = the LyCORIS formula merged into the weights by hand."""
    from model_files import merge_loha, merge_lokr

    with_adapter = render(engine.models, [LoraInput(f"tiny-{kind}", weight)])
    pipe = build_tiny_pipeline("sd15")
    merge = merge_loha if kind == "loha" else merge_lokr
    merge(pipe, lycoris_state(pipe, kind), weight)
    generator = torch.Generator().manual_seed(5)
    merged = pipe(
        "a green field", num_inference_steps=2, height=64, width=64,
        output_type="np", generator=generator,
    ).images[0]  # fmt: skip
    plain = render(engine.models, [])
    assert np.abs(with_adapter - plain).max() > 0.01
    np.testing.assert_allclose(with_adapter, merged, atol=2e-3)
