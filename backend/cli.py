"""``diffusion-layers`` / ``python -m backend``: one entry point, one module per sub-command.

Each module under ``backend/commands/`` exposes ``add_parser(subparsers)`` (which sets
``func`` on its parser) and keeps its heavy imports inside the function it runs, so that
``diffusion-layers --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from backend import __version__

COMMANDS = ("serve", "generate", "models", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-layers",
        description="Local generation backend for the Diffusion Layers Krita plugin.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"backend.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"backend.commands.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args) or 0)
