"""A refusal said before sending (nothing reached the server) goes once the settings change —
its cause may be gone, and the next Generate says it again if not; an error the server answered
stays until the next job (QA3: "Edit on a checkpoint that cannot edit" stayed after switching
to one that can)."""

from __future__ import annotations

import krita
from diffusion_layers.controller import Controller
from plugin_helpers import wait_until
from test_plugin_controller import ctl, new_doc, server  # noqa: F401
from test_plugin_edit_layers import connected
from v1_server import V1Server


def test_a_refusal_goes_when_the_settings_change(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    connected(ctl)
    ctl.update_settings(model="tiny", edit=True, prompt="make it red")
    assert not ctl.generate() and "cannot edit" in ctl.last_error and ctl.state == "error"
    assert server.jobs == {}
    ctl.update_settings(model="tiny", edit=True)  # set again as the docker's widgets do: stays
    assert "cannot edit" in ctl.last_error and ctl.state == "error"
    ctl.update_settings(model="klein")
    assert ctl.last_error == "" and ctl.state == "idle"
    ctl.update_settings(model="tiny")  # the cause is back: said again on Generate, not before
    assert ctl.last_error == ""
    assert not ctl.generate() and "cannot edit" in ctl.last_error


def test_a_servers_error_stays_when_the_settings_change(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    connected(ctl)
    server.fail_job = {"code": "out_of_memory", "message": "The GPU ran out of memory."}
    ctl.update_settings(model="tiny", edit=False, prompt="a cat")
    assert ctl.generate()
    wait_until(lambda: ctl.state == "error", what="the job's failure")
    error = ctl.last_error
    assert "out of memory" in error
    ctl.update_settings(prompt="a dog")
    assert ctl.state == "error" and ctl.last_error == error
