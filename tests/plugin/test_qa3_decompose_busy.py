"""QA3 fix, fast: Decompose pressed while a decomposition runs (the shortcut, in any document)
is refused with a sentence under the section, and the running job goes on to its group."""

from __future__ import annotations

import krita
from diffusion_layers.controller import Controller
from plugin_helpers import wait_until
from test_plugin_controller import ctl, new_doc, server  # noqa: F401
from test_plugin_edit_layers import connected
from v1_server import V1Server


def test_a_second_decompose_while_one_runs_says_so(
    ctl: Controller,  # noqa: F811
    server: V1Server,  # noqa: F811
    fake_krita: krita.Krita,
) -> None:
    doc = new_doc(fake_krita, fill=b"\x80\x80\x80\xff", size=(32, 32))
    connected(ctl)
    server.step_delay = 0.05
    assert ctl.decompose.start() and ctl.decompose.busy
    assert not ctl.decompose.start()
    assert "already running" in ctl.decompose.message
    wait_until(lambda: not ctl.decompose.busy, what="the first decomposition")
    assert ctl.decompose.state == "idle", ctl.decompose.message
    assert [n.name() for n in doc.rootNode().childNodes()][-1].startswith("Decomposed")
