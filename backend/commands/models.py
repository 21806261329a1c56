"""``diffusion-layers models list | download NAME... | verify [NAME...]``: the model manager.

Works on the one models folder the server uses (see backend/catalog.py for how it is chosen).
Each verified download is recorded in ``<models dir>/.downloads.json`` (relative path -> sha256,
source URL, what it was checked against) so that ``verify`` can re-check files whose hash is not
pinned in the catalog.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from backend import catalog

log = logging.getLogger(__name__)
MANIFEST_NAME = ".downloads.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        default=None,
        help=f"models folder (default: ${catalog.MODELS_ENV}, else {catalog.default_models_dir()})",
    )
    parser = subparsers.add_parser(
        "models",
        help="list, download and verify models",
        description="Manage the models folder shared by the server and this command.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    actions.add_parser("list", parents=[common], help="catalog entries and local files")
    download = actions.add_parser(
        "download",
        parents=[common],
        help="download catalog models ('default' = the default set)",
        description="Download into the models folder with resume and SHA-256 verification. "
        "Set HF_TOKEN for gated repositories and HF_ENDPOINT for a mirror.",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="catalog name or 'default'")
    download.add_argument("--force", action="store_true", help="download even if present")
    download.add_argument("--retries", type=int, default=5, help="resume attempts per file")
    verify = actions.add_parser(
        "verify", parents=[common], help="re-hash model files and compare with known SHA-256"
    )
    verify.add_argument("names", nargs="*", metavar="NAME", help="catalog names (default: all)")
    parser.set_defaults(func=run, models_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "models_action", None)
    if action is None:
        args.models_parser.print_help(sys.stderr)
        return EXIT_USAGE
    models_dir = catalog.resolve_models_dir(getattr(args, "models_dir", None))
    try:
        if action == "list":
            return list_models(models_dir)
        if action == "download":
            return download_models(models_dir, args.names, force=args.force, retries=args.retries)
        return verify_models(models_dir, args.names)
    except catalog.CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# --- the manifest of verified downloads ---------------------------------------------------


def load_manifest(models_dir: Path) -> dict[str, dict]:
    path = models_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def save_manifest(models_dir: Path, manifest: dict[str, dict]) -> None:
    path = models_dir / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _relative(entry: catalog.CatalogEntry) -> str:
    return f"{entry.folder}/{entry.file_name}"


# --- list ------------------------------------------------------------------------------------


def _status(models_dir: Path, entry: catalog.CatalogEntry) -> str:
    path = entry.local_path(models_dir)
    if path.is_file():
        return "present"
    if path.with_name(path.name + ".part").is_file():
        return "partial"
    return "missing"


def _other_files(models_dir: Path, known: set[str]) -> list[str]:
    found = []
    for folder in catalog.FOLDERS.values():
        if not (models_dir / folder).is_dir():
            continue
        for path in sorted((models_dir / folder).iterdir()):
            relative = f"{folder}/{path.name}"
            if path.name.startswith(".") or path.name.endswith(".part") or relative in known:
                continue
            found.append(relative)
    return found


def list_models(models_dir: Path) -> int:
    print(f"Models folder: {models_dir}")
    header = f"{'NAME':<26} {'KIND':<11} {'FAMILY':<6} {'SIZE':>7}  {'DEFAULT':<7}  STATUS"
    print(header)
    known: set[str] = set()
    for entry in catalog.entries():
        known.add(_relative(entry))
        size = f"{entry.approx_gb:.1f} GB" if entry.approx_gb else "?"
        default = "yes" if entry.default else ""
        print(
            f"{entry.name:<26} {entry.kind:<11} {entry.family:<6} {size:>7}  {default:<7}  "
            f"{_status(models_dir, entry)}"
        )
    others = _other_files(models_dir, known)
    if others:
        print("\nOther files in the models folder (your own, not from the catalog):")
        for name in others:
            print(f"  {name}")
    return EXIT_OK


# --- download --------------------------------------------------------------------------------


def offline_help(models_dir: Path) -> str:
    return (
        "Without network access the models cannot be downloaded. To use files you already have, "
        f"copy them into {models_dir} (checkpoints/ for SD1.5/SDXL .safetensors, controlnet/, "
        "lora/, vae/) or point the server at another folder with --models-dir DIR or "
        f"{catalog.MODELS_ENV}=DIR. To try the wiring without any model: install/run.sh "
        "--model tiny."
    )


def download_models(models_dir: Path, names: list[str], *, force: bool, retries: int) -> int:
    from backend import downloads

    # 1. Resolve the names first: a typo fails before anything is downloaded.
    chosen = catalog.select(names)
    catalog.ensure_layout(models_dir)
    manifest = load_manifest(models_dir)
    failures = 0
    for index, entry in enumerate(chosen, start=1):
        target = entry.local_path(models_dir)
        prefix = f"[{index}/{len(chosen)}] {entry.name}"
        # 2. Present already: keep it (`verify` re-checks it).
        if target.is_file() and not force:
            print(f"{prefix}: already present ({target})", file=sys.stderr)
            continue
        # 3. Download with resume and verification, then record what it was checked against.
        url = entry.url()
        print(f"{prefix}: {url}", file=sys.stderr)
        try:
            result = downloads.download_file(
                url,
                target,
                sha256=entry.sha256,
                retries=retries,
                on_progress=downloads.TerminalProgressBar(),
                force=force,
            )
        except downloads.NetworkUnavailable as exc:
            log.debug("download failed", exc_info=True)
            print(f"\nerror: {exc}\n\n{offline_help(models_dir)}", file=sys.stderr)
            return EXIT_FAILED
        except downloads.DownloadError as exc:
            log.debug("download failed", exc_info=True)
            print(f"error: {entry.name}: {exc}", file=sys.stderr)
            failures += 1
            continue
        checked = result.verified_against or "nothing (the server published no SHA-256)"
        print(
            f"{prefix}: done, sha256 {result.sha256} (checked against {checked})", file=sys.stderr
        )
        manifest[_relative(entry)] = {
            "sha256": result.sha256,
            "size": result.size,
            "url": url,
            "verified_against": result.verified_against,
        }
        save_manifest(models_dir, manifest)
    if failures:
        print(f"{failures} of {len(chosen)} download(s) failed.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- verify ----------------------------------------------------------------------------------


def verify_models(models_dir: Path, names: list[str]) -> int:
    from backend import downloads

    chosen = catalog.select(names) if names else catalog.entries()
    manifest = load_manifest(models_dir)
    problems = 0
    checked = 0
    for entry in chosen:
        path = entry.local_path(models_dir)
        if not path.is_file():
            if names:  # asked for by name: missing is a failure
                print(f"MISSING     {entry.name}: {path}")
                problems += 1
            continue
        expected = entry.sha256 or manifest.get(_relative(entry), {}).get("sha256")
        actual = downloads.sha256_file(path)
        checked += 1
        if expected is None:
            print(f"UNVERIFIED  {entry.name}: no known SHA-256 (sha256 {actual})")
        elif actual == expected:
            print(f"OK          {entry.name}")
        else:
            print(f"MISMATCH    {entry.name}: expected {expected}, got {actual} ({path})")
            problems += 1
    print(f"{checked} file(s) checked, {problems} problem(s) in {models_dir}")
    if problems:
        print("Delete the files marked MISMATCH and download them again.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
