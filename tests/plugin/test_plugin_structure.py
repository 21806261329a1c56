"""House rules checked on the source: imports, layering, Python 3.8 syntax, registration."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import krita
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plugin" / "diffusion_layers"
MODULES = sorted(PACKAGE.rglob("*.py"))
STDLIB = set(sys.stdlib_module_names)
CORE = {
    "job_watch",
    "protocol",
    "geometry",
    "mode",
    "placement",
    "pixels",
    "request",
    "settings",
    "sse",
    "errors",
    "canvas",
    "controller",
    "planning",
    "results",
    "layer_params",
    "preprocess",
    "connection",
    "client",
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_stdlib_pyqt5_and_the_package(path: Path) -> None:
    for name, level in _imports(path):
        top = name.split(".")[0]
        if level > 0:
            continue
        if path.name == "krita_adapter.py" and top == "krita":
            continue
        assert top in STDLIB or top == "PyQt5" or top == "__future__", f"{path.name} imports {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layering_and_py38_rules(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 8))  # Krita 5.1 may run Python 3.8
    first = next(
        n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    )
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__", (
        f"{path.name}: no future import first"
    )
    names = [n for n, _ in _imports(path)]
    assert "krita" not in names or path.name == "krita_adapter.py", f"{path.name} imports krita"
    if path.stem in CORE and path.parent == PACKAGE:
        assert not any(n.startswith("PyQt5.QtWidgets") for n in names), (
            f"{path.name} uses QtWidgets"
        )
        assert not any("ui" == n.split(".")[0] for n, lvl in _imports(path) if lvl), (
            f"{path.name} imports ui"
        )
    assert not any(isinstance(n, ast.Match) for n in ast.walk(tree)), f"{path.name} uses match"
    assert len(source.splitlines()) <= 400, f"{path.name} is over 400 lines"
    for bad in ("time.sleep", "waitForReadyRead", "QEventLoop", ".removeprefix(", ".removesuffix("):
        assert bad not in source, f"{path.name} uses {bad}"


def test_package_registers_extension_actions_and_docker(fake_krita: krita.Krita) -> None:
    import diffusion_layers  # noqa: F401  (registration happens at import, as in Krita)
    from diffusion_layers.extension import ACTIONS, DOCKER_ID, DiffusionLayersExtension, controller

    app = krita.Krita.instance()
    extensions = [e for e in app.extensions() if isinstance(e, DiffusionLayersExtension)]
    assert len(extensions) == 1
    window = krita.FakeWindow()
    extensions[0].createActions(window)
    ids = {
        "diffusion_layers_generate",
        "diffusion_layers_cancel",
        "diffusion_layers_apply",
        "diffusion_layers_apply_all",
        "diffusion_layers_toggle_live",
    }
    assert {a[0] for a in ACTIONS} == ids
    for action_id in ids:
        action = app.action(action_id)
        assert action is not None and not action.shortcut().isEmpty()
    assert [f.id for f in app.dock_factories] == [DOCKER_ID]
    ctl = controller()
    assert ctl is not None and ctl.state == "idle"
    # Live mode needs a document (tests/plugin/test_live_plugin.py drives it with one).
    app.action("diffusion_layers_toggle_live").trigger()
    assert not ctl.live.running and "Open or create a document" in ctl.last_error
    # Generate without a document: an honest error, no crash.
    app.action("diffusion_layers_generate").trigger()
    assert ctl.state == "error" and "Open or create a document" in ctl.last_error
    # The docker builds and reflects the controller.
    docker = app.dock_factories[0].klass()
    panel = docker.panel
    assert panel.error.text() == ctl.last_error
    app.createDocument(64, 64, "d", "RGBA", "U8", "", 72.0)
    panel.refresh()
    assert panel.mode.text().startswith("Generate") or not panel.isVisible()
    assert panel.generate.isEnabled() and not panel.cancel.isEnabled()
    panel.strength.setValue(40)
    assert ctl.settings.strength == 0.4
    docker.deleteLater()
