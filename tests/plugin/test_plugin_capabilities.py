"""Issue 16, plugin half: the docker shows only what the chosen model supports (per-checkpoint
``capabilities`` from GET /v1/models), and a mode the model lacks is refused before sending."""

from __future__ import annotations

import krita
import pytest
from diffusion_layers import model_capabilities
from diffusion_layers.controller import Controller
from diffusion_layers.errors import InvalidSetting
from diffusion_layers.protocol import ModelsInfo
from diffusion_layers.settings import PluginSettings
from plugin_helpers import wait_until
from test_plugin_controller import ctl, finish, new_doc, select, server  # noqa: F401
from v1_server import V1Server

TURBO = {
    "modes": ["txt2img", "img2img"],
    "negative_prompt": False,
    "cfg": False,
    "controlnet": False,
    "loras": True,
    "live": False,
    "native_size": 1024,
    "size_multiple": 16,
    "defaults": {"sampler": "euler", "steps": 4, "cfg_scale": 1.0, "guidance": 3.5},
}


def models_info() -> ModelsInfo:
    return ModelsInfo.from_dict(
        {
            "default": "tiny",
            "checkpoints": [
                {"name": "tiny", "family": "sd15", "inpaint": False},  # an older server
                {"name": "turbo", "family": "zimage", "inpaint": False, "capabilities": TURBO},
            ],
            "samplers": ["euler", "dpmpp_2m_karras"],
        }
    )


def test_capabilities_parse_and_absent_means_everything() -> None:
    models = models_info()
    old = model_capabilities.for_model(models, "")  # "" = the server default, "tiny"
    assert old.modes == ("txt2img", "img2img", "inpaint", "outpaint", "upscale")
    assert old.negative_prompt and old.cfg and old.live and old.controlnet
    turbo = model_capabilities.for_model(models, "turbo")
    assert turbo.modes == ("txt2img", "img2img")
    assert (turbo.negative_prompt, turbo.cfg, turbo.live, turbo.controlnet) == (
        False,
        False,
        False,
        False,
    )
    assert (turbo.default_cfg_scale, turbo.default_steps) == (1.0, 4)
    assert model_capabilities.for_model(None, "x").modes == old.modes
    # Malformed values from a server keep the permissive defaults.
    odd = model_capabilities.Capabilities.parse({"modes": "txt2img", "cfg": "no", "live": 0})
    assert odd.modes == old.modes and odd.cfg and odd.live


def test_a_mode_the_model_lacks_is_a_sentence_naming_model_and_mode() -> None:
    models = models_info()
    assert model_capabilities.check_mode(models, "turbo", "img2img").model == "turbo"
    with pytest.raises(InvalidSetting) as error:
        model_capabilities.check_mode(models, "turbo", "inpaint")
    message = str(error.value)
    assert message.startswith("The model 'turbo' (zimage) cannot inpaint a selection;")
    assert "it can generate a new image, refine an image." in message
    turbo = model_capabilities.for_model(models, "turbo")
    assert (
        turbo.feature_refusal("live")
        == "The model 'turbo' (zimage) does not support live painting."
    )
    assert turbo.feature_refusal("loras") is None


def test_hidden_fields_are_not_sent_but_kept_in_the_settings() -> None:
    settings = PluginSettings(negative_prompt="blurry", cfg_scale=7.0)
    turbo = model_capabilities.for_model(models_info(), "turbo")
    sent = model_capabilities.effective_settings(settings, turbo)
    assert (sent.negative_prompt, sent.cfg_scale) == ("", 1.0)
    assert (settings.negative_prompt, settings.cfg_scale) == ("blurry", 7.0)
    full = model_capabilities.for_model(models_info(), "tiny")
    assert model_capabilities.effective_settings(settings, full) is settings


def _connected(ctl: Controller) -> None:  # noqa: F811
    ctl.connect_server()
    wait_until(lambda: ctl.connection.models is not None, what="the model list")
    ctl.connection.models = models_info()


def test_generate_refuses_a_mode_the_model_lacks_and_sends_nothing(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff")
    _connected(ctl)
    ctl.update_settings(model="turbo", negative_prompt="blurry", cfg_scale=7.0)
    select(doc, 8, 8, 16, 16)
    jobs = len(server.jobs)
    assert not ctl.generate()
    assert "cannot inpaint a selection" in ctl.last_error
    assert len(server.jobs) == jobs
    # Without the selection it is a txt2img the model runs: no negative prompt, its CFG.
    doc.setSelection(krita.Selection())
    assert ctl.generate(), ctl.last_error
    finish(ctl)
    params = server.last_job().params
    assert params["model"] == "turbo"
    assert params["negative_prompt"] == "" and params["cfg_scale"] == 1.0
    assert ctl.settings.negative_prompt == "blurry"  # the artist's text is kept


def test_docker_hides_negative_and_cfg_and_greys_out_what_the_model_lacks(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.ui.docker import DockerPanel

    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff")
    panel = DockerPanel(ctl)
    _connected(ctl)
    panel.refresh()
    assert panel.negative.isVisibleTo(panel) and panel.cfg.isVisibleTo(panel)
    assert panel.live_toggle.isEnabled() and panel.controls.isEnabled()
    ctl.update_settings(model="turbo")  # emits changed -> refresh
    assert not panel.negative.isVisibleTo(panel) and not panel.cfg.isVisibleTo(panel)
    assert not panel.advanced.form.labelForField(panel.cfg).isVisibleTo(panel)
    assert not panel.live_toggle.isEnabled()
    assert "does not support live painting" in panel.live_toggle.toolTip()
    assert not panel.controls.isEnabled() and "control layers" in panel.controls.toolTip()
    assert panel.loras.isEnabled()
    # A selection asks for inpaint, which the model lacks: Generate greys out, saying why.
    select(doc, 8, 8, 16, 16)
    panel.show()
    panel.refresh_mode()
    assert not panel.generate.isEnabled()
    assert "cannot inpaint a selection" in panel.generate.toolTip()
    assert "cannot inpaint a selection" in panel.mode.text()
    ctl.update_settings(model="tiny")
    panel.refresh_mode()
    assert panel.generate.isEnabled() and panel.negative.isVisibleTo(panel)
    panel.hide()


def test_refine_detail_is_refused_for_a_model_without_upscale_but_plain_resampling_runs(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    from diffusion_layers.upscale_settings import IN_PLACE, NEW_DOCUMENT

    new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(24, 16))
    _connected(ctl)
    models = models_info()
    models.checkpoints[1].capabilities = dict(TURBO, modes=["txt2img"])
    ctl.connection.models = models
    ctl.update_settings(model="turbo")
    jobs = len(server.jobs)
    ctl.upscale.update(target=IN_PLACE)
    ctl.upscale.start()
    wait_until(lambda: not ctl.upscale.busy, what="the upscale to end")
    assert "cannot upscale or refine detail" in ctl.upscale.message
    assert len(server.jobs) == jobs
    ctl.upscale.update(target=NEW_DOCUMENT, factor=2.0, refine=False)
    assert ctl.upscale.start(), ctl.upscale.message
    wait_until(lambda: not ctl.upscale.busy, what="the upscale to end")
    assert len(server.jobs) == jobs + 1 and server.last_job().params["mode"] == "upscale"
