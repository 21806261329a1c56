"""ControlNets of Flux.1 and Z-Image: detection from the header, loading from
models/controlnet/, and controls reaching the tiny transformers' pictures (64 px, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.engine import families
from backend.engine.detect import detect_controlnet, read_header
from backend.engine.errors import InvalidRequest
from backend.engine.families import dit_files, tiny_dit
from backend.engine.families.dit_controlnet import flux_controlnet_config
from backend.engine.types import ControlInput, GenerationRequest


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit-controlnets")
    dit_files.write_comfy_layout(root, "flux1")
    dit_files.write_comfy_layout(root, "zimage")
    dit_files.write_flux_transformer(root / "checkpoints" / "flux-dev.safetensors", "dev")
    dit_files.write_zimage_transformer(root / "checkpoints" / "zimage.safetensors")
    nets = root / "controlnet"
    dit_files.write_flux_controlnet(nets / "flux-canny.safetensors")
    dit_files.write_flux_controlnet(nets / "flux-union.safetensors", union=True)
    dit_files.write_zimage_controlnet(nets / "zimage-canny.safetensors")
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    from backend.engine.engine import Engine
    from backend.engine.types import EngineConfig

    return Engine(
        EngineConfig(models_dir=str(models_dir), device="cpu", dtype="float32", cache_models=1)
    )


def _edges() -> np.ndarray:
    image = np.zeros((64, 64, 4), np.uint8)
    image[..., 3] = 255
    image[:, 20:24, :3] = 255
    image[40:44, :, :3] = 255
    return image


def _request(model: str, mode: str = "txt2img", controls=(), **extra) -> GenerationRequest:
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    source = np.full((64, 64, 4), 200, np.uint8)
    values = {
        "mode": mode,
        "width": 64,
        "height": 64,
        "prompt": "a red cat",
        "model": model,
        "steps": 2,
        "sampler": "euler",
        "cfg_scale": 1.0,
        "seed": 7,
        "strength": 0.75 if mode == "img2img" else 1.0,
        "image": None if mode == "txt2img" else source,
        "mask": mask if mode == "inpaint" else None,
        "controls": list(controls),
    }
    values.update(extra)
    return GenerationRequest(**values)


def _control(model: str | None, strength: float = 1.0, type_: str = "canny") -> ControlInput:
    return ControlInput(
        type=type_, image=_edges(), model=model, strength=strength, preprocess=False
    )


def test_controlnet_files_are_detected_by_family(models_dir) -> None:
    nets = models_dir / "controlnet"
    assert detect_controlnet(nets / "flux-canny.safetensors") == "flux1"
    assert detect_controlnet(nets / "flux-union.safetensors") == "flux1"
    assert detect_controlnet(nets / "zimage-canny.safetensors") == "zimage"


def test_inventory_lists_them_with_their_family(engine) -> None:
    found = {(net.name, net.family) for net in engine.inventory().controlnets}
    assert {
        ("flux-canny", "flux1"),
        ("flux-union", "flux1"),
        ("zimage-canny", "zimage"),
    } <= found
    assert families.get("flux1").capabilities()["controlnet"] is True
    assert families.get("zimage").capabilities()["controlnet"] is True


@pytest.mark.parametrize("union", [False, True])
def test_flux_config_is_read_off_a_header_without_one(models_dir, union) -> None:
    name = "flux-union" if union else "flux-canny"
    keys, _ = read_header(models_dir / "controlnet" / f"{name}.safetensors")
    config = flux_controlnet_config(keys)
    expected = tiny_dit.flux_controlnet_config(union)
    for key in ("in_channels", "num_layers", "num_single_layers", "attention_head_dim"):
        assert config[key] == expected[key], key
    assert config["num_attention_heads"] == expected["num_attention_heads"]
    assert config["joint_attention_dim"] == expected["joint_attention_dim"]
    assert config["num_mode"] == (10 if union else None)


@pytest.mark.parametrize(
    ("model", "net", "mode"),
    [
        ("flux-dev", "flux-canny", "txt2img"),
        ("flux-dev", "flux-union", "txt2img"),
        ("flux-dev", "flux-canny", "img2img"),
        ("flux-dev", "flux-canny", "inpaint"),
        ("zimage", "zimage-canny", "txt2img"),
    ],
)
def test_a_control_changes_the_picture(engine, model, net, mode) -> None:
    plain = engine.generate(_request(model, mode))[0].image
    controlled = engine.generate(_request(model, mode, [_control(net)]))[0].image
    assert plain.shape == controlled.shape
    assert np.abs(plain.astype(int) - controlled.astype(int)).mean() > 0.5


def test_strength_zero_equals_no_control_zimage(engine) -> None:
    plain = engine.generate(_request("zimage"))[0].image
    zero = engine.generate(_request("zimage", controls=[_control("zimage-canny", 0.0)]))[0].image
    assert np.abs(plain.astype(int) - zero.astype(int)).max() <= 1


def test_strength_zero_ignores_the_map_flux(engine) -> None:
    """FluxControlNetPipeline samples the map's VAE latent from the seed's generator before
    the noise, so strength 0 is not bit-equal to no control; the map itself no longer counts."""

    def run(strength: float, image: np.ndarray) -> np.ndarray:
        control = _control("flux-canny", strength)
        control.image = image
        return engine.generate(_request("flux-dev", controls=[control]))[0].image

    other = np.full((64, 64, 4), 255, np.uint8)
    assert np.abs(run(0.0, _edges()).astype(int) - run(0.0, other).astype(int)).max() <= 1
    assert np.abs(run(1.0, _edges()).astype(int) - run(1.0, other).astype(int)).mean() > 0.5


def test_union_mode_follows_the_control_type(engine) -> None:
    canny = engine.generate(_request("flux-dev", controls=[_control("flux-union")]))[0].image
    depth = engine.generate(_request("flux-dev", controls=[_control("flux-union", type_="depth")]))[
        0
    ].image
    assert not np.array_equal(canny, depth)  # the mode reaches the model


@pytest.mark.parametrize(("model", "net"), [("flux-dev", "zimage-canny"), ("zimage", "flux-canny")])
def test_a_wrong_family_controlnet_is_refused_naming_both(engine, model, net) -> None:
    with pytest.raises(InvalidRequest) as error:
        engine.check_request(_request(model, controls=[_control(net)]))
    message = str(error.value)
    assert error.value.field == "controls[0].model"
    assert "Flux.1" in message and "Z-Image" in message


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_zimage_img2img_and_inpaint_with_a_control_are_refused_at_submit(engine, mode) -> None:
    with pytest.raises(InvalidRequest) as error:
        engine.check_request(_request("zimage", mode, [_control("zimage-canny")]))
    assert error.value.field == "controls[0].type"
    assert "Z-Image" in str(error.value) and mode in str(error.value)


def test_zimage_takes_one_control_at_a_time(engine) -> None:
    two = [_control("zimage-canny"), _control("zimage-canny")]
    with pytest.raises(InvalidRequest) as error:
        engine.check_request(_request("zimage", controls=two))
    assert error.value.field == "controls[1].type"
