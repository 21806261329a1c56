"""What the Krita plugin consists of: the one list both install_plugin.py and package.py ship.

Standard library only; runs on any Python >= 3.8 (Krita users may run it with the system
Python). The plugin is ``plugin/<name>.desktop`` plus the package folder ``plugin/<name>/``;
caches, type stubs, tests and hidden files are never shipped.
"""

from __future__ import annotations

import configparser
from pathlib import Path

PLUGIN_NAME = "diffusion_layers"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLUGIN_ROOT = REPO_ROOT / "plugin"
EXCLUDED_DIRS = {"__pycache__", "stubs", "tests", "test", ".pytest_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".pyi", ".orig", ".rej", "~")


class PluginSourceError(RuntimeError):
    """The plugin folder is incomplete; the message names the missing piece."""


def library_name(desktop: Path) -> str:
    """``X-KDE-Library`` of a Krita plugin .desktop file (the key Krita enables it by)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(desktop.read_text(encoding="utf-8"))
        return parser["Desktop Entry"]["X-KDE-Library"].strip()
    except (OSError, KeyError, configparser.Error) as exc:
        raise PluginSourceError(
            f"desktop={str(desktop)!r}: no X-KDE-Library entry ({exc})"
        ) from exc


def check_plugin_root(plugin_root: Path, name: str = PLUGIN_NAME) -> tuple[Path, Path]:
    """Return (desktop file, package folder) or raise PluginSourceError naming what is missing."""
    desktop = plugin_root / f"{name}.desktop"
    package = plugin_root / name
    if not desktop.is_file():
        raise PluginSourceError(f"plugin_root={str(plugin_root)!r}: {desktop.name} is missing")
    if not (package / "__init__.py").is_file():
        raise PluginSourceError(f"plugin_root={str(plugin_root)!r}: {name}/__init__.py is missing")
    found = library_name(desktop)
    if found != name:
        raise PluginSourceError(f"{desktop.name}: X-KDE-Library={found!r}, expected {name!r}")
    return desktop, package


def shipped(relative: Path) -> bool:
    """True for files that belong in an installed plugin."""
    if any(part in EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
        return False
    return not relative.name.endswith(EXCLUDED_SUFFIXES)


def plugin_files(
    plugin_root: Path = DEFAULT_PLUGIN_ROOT, name: str = PLUGIN_NAME
) -> list[tuple[Path, str]]:
    """Every (source file, path inside the install/zip root) of the plugin, sorted."""
    desktop, package = check_plugin_root(plugin_root, name)
    files = [(desktop, desktop.name)]
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(plugin_root)
        if path.is_file() and shipped(relative):
            files.append((path, relative.as_posix()))
    return files
