"""Build ``diffusion_layers.zip`` for Krita's Tools > Scripts > Import Python Plugin from File.

    python3 install/package.py [--out DIR]     # default: dist/

The zip's root holds exactly ``diffusion_layers.desktop`` and the ``diffusion_layers/`` package
(no caches, stubs, tests or hidden files). Entries are sorted and time-stamped with a fixed date,
so the same sources always give the same bytes. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_files import (  # noqa: E402
    DEFAULT_PLUGIN_ROOT,
    PLUGIN_NAME,
    REPO_ROOT,
    PluginSourceError,
    plugin_files,
)

FIXED_DATE = (2020, 1, 1, 0, 0, 0)


def build_zip(out_dir: Path, plugin_root: Path = DEFAULT_PLUGIN_ROOT) -> Path:
    """Write ``out_dir/diffusion_layers.zip`` and return its path."""
    files = plugin_files(plugin_root, PLUGIN_NAME)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN_NAME}.zip"
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, relative in files:
            info = zipfile.ZipInfo(relative, FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder")
    parser.add_argument(
        "--plugin-root", type=Path, default=DEFAULT_PLUGIN_ROOT, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    try:
        target = build_zip(args.out, args.plugin_root)
    except (OSError, PluginSourceError) as exc:
        print(f"error: could not build the plugin zip: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(target) as archive:
        count = len(archive.namelist())
    print(f"Wrote {target} ({count} files). In Krita: Tools > Scripts > Import Python Plugin")
    print("from File..., pick this zip, answer Yes to enable it, then restart Krita.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
