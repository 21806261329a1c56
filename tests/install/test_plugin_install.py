"""install/install_plugin.py and install/package.py: the files Krita gets, and kritarc."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ROOT = REPO / "plugin"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(REPO / "install"))
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "install" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "install"))


plugin_files = load("plugin_files")
install_plugin = load("install_plugin")
package = load("package")


def expected_files(root: Path = PLUGIN_ROOT) -> set[str]:
    """The plugin's shippable files, listed independently of plugin_files.py."""
    found = {"diffusion_layers.desktop"}
    for path in (root / "diffusion_layers").rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            found.add(relative.as_posix())
    return found


def run_installer(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, str(REPO / "install" / "install_plugin.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_installs_into_a_fresh_home_and_enables_the_plugin(tmp_path):
    done = run_installer(tmp_path)

    assert done.returncode == 0, done.stderr
    pykrita = tmp_path / ".local" / "share" / "krita" / "pykrita"
    assert tree(pykrita) == expected_files()
    kritarc = (tmp_path / ".config" / "kritarc").read_text()
    assert "[python]\nenable_diffusion_layers=true\n" in kritarc
    for relative in expected_files():
        assert (pykrita / relative).read_bytes() == (PLUGIN_ROOT / relative).read_bytes()


def test_existing_kritarc_is_kept_line_for_line(tmp_path):
    kritarc = tmp_path / ".config" / "kritarc"
    kritarc.parent.mkdir(parents=True)
    original = (
        "[General]\nLastPreset[$e]=$HOME/x\ncolorPreset=1\n\n"
        "[python]\nenable_other_plugin=true\nenable_diffusion_layers=false\n\n"
        "[theme]\nTheme=Krita dark\n"
    )
    kritarc.write_text(original)

    assert run_installer(tmp_path).returncode == 0
    assert run_installer(tmp_path).returncode == 0  # idempotent

    assert kritarc.read_text() == original.replace(
        "enable_diffusion_layers=false", "enable_diffusion_layers=true"
    )


def test_python_section_is_added_when_missing(tmp_path):
    kritarc = tmp_path / "kritarc"
    kritarc.write_text("[General]\nfoo=1\n")

    install_plugin.set_enabled(kritarc, "diffusion_layers", True)

    assert kritarc.read_text() == "[General]\nfoo=1\n\n[python]\nenable_diffusion_layers=true\n"


def test_reinstall_replaces_stale_files(tmp_path):
    pykrita = tmp_path / ".local" / "share" / "krita" / "pykrita"
    stale = pykrita / "diffusion_layers" / "removed_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("old = True\n")

    assert run_installer(tmp_path).returncode == 0

    assert not stale.exists()
    assert tree(pykrita) == expected_files()


def test_flatpak_krita_gets_the_plugin_too(tmp_path):
    (tmp_path / ".var" / "app" / "org.kde.krita").mkdir(parents=True)

    assert run_installer(tmp_path).returncode == 0

    flatpak = tmp_path / ".var" / "app" / "org.kde.krita"
    assert tree(flatpak / "data" / "krita" / "pykrita") == expected_files()
    assert "enable_diffusion_layers=true" in (flatpak / "config" / "kritarc").read_text()


def test_link_mode_and_uninstall(tmp_path):
    assert run_installer(tmp_path, "--link").returncode == 0
    pykrita = tmp_path / ".local" / "share" / "krita" / "pykrita"
    assert (pykrita / "diffusion_layers").is_symlink()
    assert (pykrita / "diffusion_layers").resolve() == (PLUGIN_ROOT / "diffusion_layers").resolve()

    assert run_installer(tmp_path, "--uninstall").returncode == 0

    assert list(pykrita.iterdir()) == []
    assert "enable_diffusion_layers=false" in (tmp_path / ".config" / "kritarc").read_text()
    assert (PLUGIN_ROOT / "diffusion_layers" / "__init__.py").is_file()  # the source survived


@pytest.mark.parametrize(
    ("platform", "env", "pykrita", "kritarc"),
    [
        ("darwin", {}, "Library/Application Support/krita/pykrita", "Library/Preferences/kritarc"),
        ("win32", {"APPDATA": "/r", "LOCALAPPDATA": "/l"}, "/r/krita/pykrita", "/l/kritarc"),
        (
            "linux",
            {"XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c"},
            "/d/krita/pykrita",
            "/c/kritarc",
        ),
    ],
)
def test_krita_locations_per_platform(platform, env, pykrita, kritarc):
    home = Path("/home/u")
    (location,) = install_plugin.krita_locations(platform, home, env, include_flatpak=False)
    assert location.pykrita == home / pykrita
    assert location.kritarc == home / kritarc


def test_incomplete_plugin_source_fails_with_a_clear_message(tmp_path):
    (tmp_path / "diffusion_layers").mkdir()

    done = run_installer(tmp_path, "--plugin-root", str(tmp_path))

    assert done.returncode == 1
    assert "diffusion_layers.desktop is missing" in done.stderr


def test_package_zip_holds_exactly_the_plugin(tmp_path):
    cache = PLUGIN_ROOT / "diffusion_layers" / "__pycache__"
    made_cache = not cache.exists()
    cache.mkdir(exist_ok=True)
    marker = cache / "dl_package_test.cpython-311.pyc"
    marker.write_bytes(b"junk")
    try:
        first = package.build_zip(tmp_path / "a")
        second = package.build_zip(tmp_path / "b")
    finally:
        marker.unlink()
        if made_cache:
            cache.rmdir()

    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
        assert archive.testzip() is None
        for name in names:
            assert archive.read(name) == (PLUGIN_ROOT / name).read_bytes()
    assert first.name == "diffusion_layers.zip"
    assert names == expected_files()
    assert {name.split("/")[0] for name in names} == {
        "diffusion_layers.desktop",
        "diffusion_layers",
    }
    assert not any("stubs" in n or "test" in n.split("/")[-1] for n in names)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]  # reproducible


def test_package_skips_stubs_tests_and_hidden_files(tmp_path):
    root = tmp_path / "plugin"
    pkg = root / "diffusion_layers"
    for relative in ("__init__.py", "ui/docker.py", "icons/logo.png", "stubs/krita.pyi"):
        (pkg / relative).parent.mkdir(parents=True, exist_ok=True)
        (pkg / relative).write_text("x")
    for relative in ("tests/test_x.py", ".hidden", "mod.pyi", "__pycache__/a.pyc"):
        (pkg / relative).parent.mkdir(parents=True, exist_ok=True)
        (pkg / relative).write_text("x")
    (root / "diffusion_layers.desktop").write_text(
        "[Desktop Entry]\nX-KDE-Library=diffusion_layers\n"
    )

    target = package.build_zip(tmp_path / "out", root)

    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == [
            "diffusion_layers.desktop",
            "diffusion_layers/__init__.py",
            "diffusion_layers/icons/logo.png",
            "diffusion_layers/ui/docker.py",
        ]


def test_desktop_library_name_must_match(tmp_path):
    root = tmp_path / "plugin"
    (root / "diffusion_layers").mkdir(parents=True)
    (root / "diffusion_layers" / "__init__.py").write_text("")
    (root / "diffusion_layers.desktop").write_text("[Desktop Entry]\nX-KDE-Library=other\n")

    with pytest.raises(plugin_files.PluginSourceError, match="X-KDE-Library='other'"):
        plugin_files.plugin_files(root)


def test_explicit_home_ignores_xdg_variables(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    home = tmp_path / "home"

    done = subprocess.run(
        [sys.executable, str(REPO / "install" / "install_plugin.py"), "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert (home / ".local" / "share" / "krita" / "pykrita" / "diffusion_layers.desktop").is_file()
    assert (home / ".config" / "kritarc").is_file()
    assert not (tmp_path / "xdg-data").exists() and not (tmp_path / "xdg-config").exists()


def test_one_package_serves_krita_5_and_6(tmp_path):
    """Nothing binding-specific is chosen at install or package time: the same files go to
    every Krita, and the binding is picked at start-up by qt.py (both bindings' imports are in
    the shipped source; see docs/plugin.md)."""
    installed = {}
    for major in ("5", "6"):
        home = tmp_path / f"home{major}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
        env.update(HOME=str(home), DIFFUSION_LAYERS_QT=major)
        done = subprocess.run(
            [sys.executable, str(REPO / "install" / "install_plugin.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        pykrita = home / ".local" / "share" / "krita" / "pykrita"
        installed[major] = {p: (pykrita / p).read_bytes() for p in tree(pykrita)}
    assert installed["5"] == installed["6"]
    with zipfile.ZipFile(package.build_zip(tmp_path / "zip")) as archive:
        names = set(archive.namelist())
        chooser = archive.read("diffusion_layers/qt.py").decode()
        widgets = archive.read("diffusion_layers/ui/qt_widgets.py").decode()
    assert names == set(installed["5"]) == expected_files()
    assert {"diffusion_layers/startup.py", "diffusion_layers/ui/qt_widgets.py"} <= names
    for source in (chooser, widgets):
        assert "from PyQt5." in source and "from PyQt6." in source
