"""House rules checked on the source: imports, layering, Python 3.8 syntax, registration."""

from __future__ import annotations

import ast
import enum
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


#: The only modules that import a Qt binding (they choose PyQt5 or PyQt6); all others take
#: their Qt names from them.
BINDING_MODULES = {"qt.py", "qt_widgets.py"}
#: The only modules that import ``krita``: the adapter, and start-up (which must work when the
#: Qt binding does not, to say so in the docker).
KRITA_MODULES = {"krita_adapter.py", "startup.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_stdlib_the_package_and_qt_through_qt_py(path: Path) -> None:
    for name, level in _imports(path):
        top = name.split(".")[0]
        if level > 0:
            continue
        if path.name in KRITA_MODULES and top == "krita":
            continue
        if top in ("PyQt5", "PyQt6", "sip", "PySide2", "PySide6"):
            assert path.name in BINDING_MODULES, (
                f"{path.name} imports {name}: import Qt names from diffusion_layers.qt"
                " (widgets: ui/qt_widgets.py), which choose PyQt5 or PyQt6"
            )
            continue
        assert top in STDLIB or top == "__future__", f"{path.name} imports {name}"


def _qt_names(tree: ast.AST) -> dict[str, object]:
    """Local name → Qt object for every name a module imports from qt.py / ui/qt_widgets.py."""
    import diffusion_layers.qt
    import diffusion_layers.ui.qt_widgets

    sources = {"qt": diffusion_layers.qt, "qt_widgets": diffusion_layers.ui.qt_widgets}
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and node.module in sources:
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(sources[node.module], alias.name)
    return names


def _is_enum_member(value: object) -> bool:
    if isinstance(value, enum.Enum):  # PyQt6
        return True
    return type(type(value)).__name__ == "enumtype"  # PyQt5: sip enum values


def _attribute_chains(tree: ast.AST):
    """(line, root name, [attr, ...]) for every maximal ``Name.attr.attr`` chain."""
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        attrs: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            attrs.insert(0, current.attr)
            current = current.value
        if isinstance(current, ast.Name):
            yield node.lineno, current.id, attrs


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_qt_names_are_written_the_way_both_bindings_accept(path: Path) -> None:
    """Enums fully scoped (``QImage.Format.Format_ARGB32``, not ``QImage.Format_ARGB32``), no
    ``exec_``, and every ``Qt.X.Y`` / ``QTimer.singleShot`` name exists in the binding under
    test — run under PyQt5 and under PyQt6 (``DIFFUSION_LAYERS_QT``), so a name one of them
    lacks fails too. (Methods called on instances are pyright's job, once per binding.)"""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = _qt_names(tree)
    where = path.relative_to(PACKAGE)
    for line, root, attrs in _attribute_chains(tree):
        assert not {"exec_", "print_"} & set(attrs), f"{where}:{line}: use exec()/print()"
        if root not in names:
            continue
        owner, written = names[root], root
        for attr in attrs:
            assert hasattr(owner, attr), f"{where}:{line}: {written}.{attr} does not exist here"
            if not attr[:1].isupper():
                break  # a method (QTimer.singleShot) or plain attribute: no Qt name after it
            value = getattr(owner, attr)
            if _is_enum_member(value):
                assert isinstance(owner, type) and isinstance(value, owner), (
                    f"{where}:{line}: unscoped enum {written}.{attr}: write it with its enum"
                    f" type, {written}.{type(value).__name__}.{attr}"
                )
            owner, written = value, f"{written}.{attr}"


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
    assert "krita" not in names or path.name in KRITA_MODULES, f"{path.name} imports krita"
    if path.stem in CORE and path.parent == PACKAGE:
        assert not any(n.endswith("qt_widgets") or ".QtWidgets" in n for n in names), (
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
        "diffusion_layers_upscale",
        "diffusion_layers_decompose",
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
    app.action("diffusion_layers_upscale").trigger()
    assert ctl.upscale.state == "failed" and "Open or create a document" in ctl.upscale.message
    app.action("diffusion_layers_decompose").trigger()
    assert ctl.decompose.state == "failed" and "Open or create a document" in ctl.decompose.message
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
