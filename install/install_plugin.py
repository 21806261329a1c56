"""Install the Diffusion Layers plugin into the user's Krita and enable it.

    python3 install/install_plugin.py            # copy into Krita's pykrita folder(s), enable
    python3 install/install_plugin.py --link     # symlink instead (plugin developers)
    python3 install/install_plugin.py --uninstall

Where Krita looks (``pykrita`` = Python plugins, ``kritarc`` = settings, where
``[python] enable_diffusion_layers=true`` switches the plugin on):

=========================  ====================================================  ===================================================
Krita build                pykrita folder                                        kritarc
=========================  ====================================================  ===================================================
Linux (distro, AppImage)   ``$XDG_DATA_HOME/krita/pykrita`` (~/.local/share/...)  ``$XDG_CONFIG_HOME/kritarc`` (~/.config/kritarc)
Linux flatpak              ``~/.var/app/org.kde.krita/data/krita/pykrita``        ``~/.var/app/org.kde.krita/config/kritarc``
macOS                      ``~/Library/Application Support/krita/pykrita``        ``~/Library/Preferences/kritarc``
Windows                    ``%APPDATA%\\krita\\pykrita``                            ``%LOCALAPPDATA%\\kritarc``
=========================  ====================================================  ===================================================

On Linux the flatpak location is used as well when ``~/.var/app/org.kde.krita`` exists. The
snap build keeps its files under ``~/snap/krita/current/``: pass ``--pykrita`` and ``--kritarc``.
Standard library only; runs on Python >= 3.8. Restart Krita afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_files import (  # noqa: E402
    DEFAULT_PLUGIN_ROOT,
    PLUGIN_NAME,
    PluginSourceError,
    plugin_files,
)

FLATPAK_APP = Path(".var") / "app" / "org.kde.krita"


class InstallError(RuntimeError):
    """The plugin could not be installed; the message says where and why."""


@dataclass
class KritaLocation:
    label: str
    pykrita: Path
    kritarc: Path


def krita_locations(
    platform: str, home: Path, env: dict[str, str], include_flatpak: bool | None = None
) -> list[KritaLocation]:
    """The Krita installs to put the plugin into, for this platform and home folder."""
    if platform.startswith("win"):
        appdata = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        local = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return [KritaLocation("Windows", appdata / "krita" / "pykrita", local / "kritarc")]
    if platform == "darwin":
        return [
            KritaLocation(
                "macOS",
                home / "Library" / "Application Support" / "krita" / "pykrita",
                home / "Library" / "Preferences" / "kritarc",
            )
        ]
    data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    found = [KritaLocation("Linux", data / "krita" / "pykrita", config / "kritarc")]
    flatpak = home / FLATPAK_APP
    if include_flatpak or (include_flatpak is None and flatpak.is_dir()):
        found.append(
            KritaLocation(
                "Linux flatpak",
                flatpak / "data" / "krita" / "pykrita",
                flatpak / "config" / "kritarc",
            )
        )
    return found


def set_enabled(kritarc: Path, name: str, enabled: bool) -> None:
    """Set ``[python] enable_<name>=true|false`` in kritarc, leaving every other line as it is.

    kritarc is a KConfig file (keys like ``Foo[$e]``, duplicate-looking sections): it is edited
    line by line rather than round-tripped through configparser, which would rewrite it.
    """
    key = f"enable_{name}"
    wanted = f"{key}={'true' if enabled else 'false'}"
    try:
        lines = kritarc.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    section = None
    python_at = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            if section == "python" and python_at is None:
                python_at = index
            continue
        if section == "python" and stripped.split("=", 1)[0].strip() == key:
            lines[index] = wanted
            break
    else:
        if python_at is None:
            lines.extend(([""] if lines and lines[-1].strip() else []) + ["[python]", wanted])
        else:
            lines.insert(python_at + 1, wanted)
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    tmp = kritarc.with_name(kritarc.name + ".diffusion-layers.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, kritarc)


def _remove_existing(pykrita: Path, name: str) -> None:
    for path in (pykrita / name, pykrita / f"{name}.desktop"):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def install_into(location: KritaLocation, plugin_root: Path, link: bool) -> None:
    """1. check the source, 2. replace the old copy, 3. copy or link, 4. enable in kritarc."""
    files = plugin_files(plugin_root, PLUGIN_NAME)
    location.pykrita.mkdir(parents=True, exist_ok=True)
    _remove_existing(location.pykrita, PLUGIN_NAME)
    if link:
        for name in (PLUGIN_NAME, f"{PLUGIN_NAME}.desktop"):
            (location.pykrita / name).symlink_to((plugin_root / name).resolve())
    else:
        for source, relative in files:
            target = location.pykrita / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    set_enabled(location.kritarc, PLUGIN_NAME, True)


def uninstall_from(location: KritaLocation) -> None:
    _remove_existing(location.pykrita, PLUGIN_NAME)
    if location.kritarc.exists():
        set_enabled(location.kritarc, PLUGIN_NAME, False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, default=None, help="home folder (default: ~; ignores XDG_* then)"
    )
    parser.add_argument("--platform", default=sys.platform, help=argparse.SUPPRESS)
    parser.add_argument("--flatpak", action="store_true", help="also install for flatpak Krita")
    parser.add_argument("--pykrita", type=Path, help="explicit pykrita folder (with --kritarc)")
    parser.add_argument("--kritarc", type=Path, help="explicit kritarc file (with --pykrita)")
    parser.add_argument("--link", action="store_true", help="symlink instead of copying")
    parser.add_argument("--uninstall", action="store_true", help="remove and disable")
    parser.add_argument(
        "--plugin-root", type=Path, default=DEFAULT_PLUGIN_ROOT, help=argparse.SUPPRESS
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.pykrita is None) != (args.kritarc is None):
        print("error: --pykrita and --kritarc go together", file=sys.stderr)
        return 2
    # An explicit --home (tests, a second Krita profile) ignores XDG_*/APPDATA from the
    # environment: every path is then derived from that home folder.
    env = {} if args.home else dict(os.environ)
    home = args.home or Path(os.environ.get("HOME") or Path.home())
    if args.pykrita is not None:
        locations = [KritaLocation("custom", args.pykrita, args.kritarc)]
    else:
        flatpak = True if args.flatpak else None
        locations = krita_locations(args.platform, home, env, flatpak)
    try:
        for location in locations:
            if args.uninstall:
                uninstall_from(location)
                print(f"Removed Diffusion Layers from {location.label} Krita ({location.pykrita})")
            else:
                install_into(location, args.plugin_root, args.link)
                print(
                    f"Installed Diffusion Layers for {location.label} Krita: {location.pykrita}\n"
                    f"  enabled in {location.kritarc}"
                )
    except (OSError, PluginSourceError) as exc:
        print(f"error: could not install the plugin: {exc}", file=sys.stderr)
        return 1
    if not args.uninstall:
        print("Restart Krita, then open Settings > Dockers > Diffusion Layers.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
