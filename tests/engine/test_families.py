"""The family registry: detection from header fixtures (key names and shapes only, built from
the key names diffusers' own single-file loader recognises), and what each family declares.

A fixture is tests/fixtures/families/<name>.json: {"kind": "checkpoint" | "controlnet" |
"lora", "expect": {"family", "inpaint", "diffusers"} or {"error": text}, "keys": {name: shape},
"metadata": {safetensors metadata} (optional: variants that share every tensor, Qwen-Image-Edit)}.
A new family adds its fixtures there (docs/engine.md, "Adding a family").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.engine import families
from backend.engine.detect import CheckpointKind, controlnet_family_from_header, kind_from_header
from backend.engine.errors import ModelLoadError
from backend.engine.lora_formats import lora_facts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "families"
CONFIGS = Path(__file__).resolve().parents[2] / "backend" / "engine" / "configs"


def _fixtures(kind: str) -> list[str]:
    return sorted(
        path.stem
        for path in FIXTURES.glob("*.json")
        if json.loads(path.read_text())["kind"] == kind
    )


def _load(name: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["expect"], {key: tuple(shape) for key, shape in data["keys"].items()}


def _metadata(name: str) -> dict[str, str]:
    return json.loads((FIXTURES / f"{name}.json").read_text()).get("metadata", {})


@pytest.mark.parametrize("name", _fixtures("checkpoint"))
def test_checkpoint_headers_are_detected_or_refused_by_name(name: str) -> None:
    expect, keys = _load(name)
    if "error" in expect:
        with pytest.raises(ModelLoadError, match=re.escape(expect["error"])) as error:
            kind_from_header(keys, f"{name}.safetensors")
        assert f"{name}.safetensors" in error.value.message
        return
    kind = kind_from_header(keys, f"{name}.safetensors", _metadata(name))
    assert kind == CheckpointKind(expect["family"], expect["inpaint"])


@pytest.mark.parametrize("name", _fixtures("checkpoint"))
def test_the_fixtures_are_what_diffusers_single_file_loader_says(name: str) -> None:
    """diffusers' own model-type inference reads the same headers the same way."""
    torch = pytest.importorskip("torch")
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    expect, keys = _load(name)
    if "diffusers" not in expect:
        return
    state = {key: torch.empty(shape, device="meta") for key, shape in keys.items()}
    assert infer_diffusers_model_type(state) == expect["diffusers"]


@pytest.mark.parametrize("name", _fixtures("controlnet"))
def test_controlnet_headers(name: str) -> None:
    expect, keys = _load(name)
    assert controlnet_family_from_header(keys, name) == expect["family"]


@pytest.mark.parametrize("name", _fixtures("lora"))
def test_lora_headers(name: str) -> None:
    expect, keys = _load(name)
    facts = lora_facts(keys, {}, name)
    assert facts.problem is None and facts.family == expect["family"]


def test_every_declared_family_has_fixtures_for_each_kind() -> None:
    for kind in ("checkpoint", "controlnet", "lora"):
        found = {_load(name)[0].get("family") for name in _fixtures(kind)}
        for family in families.FAMILIES:
            if kind == "controlnet" and not family.controlnet:
                continue
            shared = set(family.shares_addons_of) if kind != "checkpoint" else set()
            assert family.id in found or shared & found, f"no {kind} header fixture for {family.id}"


def test_the_registry_answers_for_known_and_unknown_ids() -> None:
    assert families.ids() == tuple(family.id for family in families.FAMILIES)
    assert len(set(families.ids())) == len(families.FAMILIES)
    assert families.label("sdxl") == "SDXL"
    assert families.label("no-such") == "no-such"
    with pytest.raises(families.UnknownFamily, match="family='no-such': expected one of"):
        families.get("no-such")


@pytest.mark.parametrize("family", families.FAMILIES, ids=families.ids())
def test_each_family_declares_a_complete_description(family: families.Family) -> None:
    # 1. Shipped configs exist where the shared single-file SD loader needs them (a family
    # with its own ``load`` hook finds its configs itself).
    for folder in (family.config_folder, family.inpaint_config_folder):
        if folder is not None and family.load is None:
            assert (CONFIGS / folder / "model_index.json").is_file(), folder
    if family.controlnet_config_folder is not None and family.load is None:
        assert (CONFIGS / family.controlnet_config_folder / "config.json").is_file()
    # 2. The task pipelines are real diffusers classes; txt2img is always offered.
    import diffusers

    assert ("txt2img", False) in family.pipelines or (family.decompose and not family.pipelines)
    for class_name in [family.base_pipeline, *family.pipelines.values()]:
        assert issubclass(family.pipeline_type(class_name), diffusers.DiffusionPipeline)
    assert not hasattr(diffusers, "DLFlux2KleinImg2ImgPipeline")  # no class set on diffusers
    # 3. Sizes, previews, defaults and text encoders are usable values.
    assert family.native_size % family.size_multiple == 0
    assert family.preview.channels >= 3 and all(len(row) == 3 for row in family.preview.factors)
    assert family.defaults.steps >= 1 and family.defaults.cfg_scale >= 0
    assert family.text_encoders and len({e.component for e in family.text_encoders}) == len(
        family.text_encoders
    )
    # 4. Its tiny built-ins are declared, and no two families share a name.
    # (transformer families with a ``load`` hook have no built-ins: their tiny files are
    # written by families/dit_files.py in the tests, tests/engine/test_flux_zimage.py)
    assert family.tiny.checkpoints or family.load is not None


def test_tiny_names_are_unique_across_families() -> None:
    names = [
        name
        for family in families.FAMILIES
        for name in [*family.tiny.checkpoints, *family.tiny.controlnets, *family.tiny.loras]
    ]
    assert len(names) == len(set(names))
    for name in names:
        found = families.tiny_family(name)
        assert found is not None


def test_capabilities_follow_the_contract_shape() -> None:
    """docs/protocol.md: modes, negative_prompt, cfg, controlnet, loras, live, native_size,
    size_multiple, defaults {sampler, steps, cfg_scale, guidance}, edit, layers."""
    sd15, sdxl = families.get("sd15").capabilities(), families.get("sdxl").capabilities()
    assert set(sd15) == {
        "modes",
        "negative_prompt",
        "cfg",
        "controlnet",
        "loras",
        "live",
        "native_size",
        "size_multiple",
        "defaults",
        "edit",
        "layers",
    }
    assert sd15["edit"] is None and sd15["layers"] is None
    assert "edit" not in sd15["modes"] and "layers" not in sd15["modes"]
    assert sd15["modes"][:4] == ["txt2img", "img2img", "inpaint", "outpaint"]
    assert (sd15["native_size"], sd15["size_multiple"]) == (512, 8)
    assert (sdxl["native_size"], sdxl["size_multiple"]) == (1024, 64)
    assert sd15["negative_prompt"] and sd15["cfg"] and sdxl["controlnet"]
    assert set(sd15["defaults"]) == {"sampler", "steps", "cfg_scale", "guidance"}


def test_a_family_without_inpaint_pipelines_offers_no_inpaint_modes() -> None:
    """What the docker greys out comes from the pipelines a family declares."""
    from dataclasses import replace

    base = families.get("sd15")
    txt_only = replace(
        base,
        id="t",
        pipelines={("txt2img", False): "StableDiffusionPipeline"},
        negative_prompt=False,
        cfg=False,
    )
    capabilities = txt_only.capabilities()
    assert capabilities["modes"] == ["txt2img"]
    assert capabilities["controlnet"] is False
    assert capabilities["negative_prompt"] is False and capabilities["cfg"] is False
    with pytest.raises(ValueError, match="task 'upscale'"):
        replace(base, pipelines={("upscale", False): "X"})


def test_files_of_unknown_architecture_say_what_their_header_holds() -> None:
    """Must 7: the reason names the header's contents (tensor count, commonest prefixes)."""
    from backend.engine.detect import controlnet_family_from_header
    from backend.engine.vae import vae_facts

    keys = {"net.0.weight": (4, 4), "net.1.weight": (4, 4), "out.bias": (4,)}
    held = "3 tensors; the most common key prefixes are net.0.* (1), net.1.* (1), out.* (1)"
    assert held in (lora_facts(keys, {}, "odd").problem or "")
    assert held in (vae_facts(keys, {}, "odd").problem or "")
    with pytest.raises(ModelLoadError, match="not a ControlNet model") as error:
        controlnet_family_from_header(keys, "odd")
    assert held in error.value.message
