"""Generate the committed OpenAPI schema (``backend/api/openapi.json``) and check it for drift.

python -m backend.api.openapi --write    # regenerate after changing the API
python -m backend.api.openapi --check    # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("openapi.json")
REGENERATE = "python -m backend.api.openapi --write"


def install_openapi(app) -> None:
    """Make ``app.openapi()`` also list the protocol models that travel in multipart parts and
    SSE events (JobParams, PreprocessParams, ProgressEvent): FastAPI cannot see those."""
    from pydantic.json_schema import models_json_schema

    from backend.protocol import JobParams, LiveParams, PreprocessParams, ProgressEvent

    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        models = [
            (m, "validation") for m in (JobParams, PreprocessParams, ProgressEvent, LiveParams)
        ]
        _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in defs.get("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


class _SchemaOnlyEngine:
    """Enough of an engine to build the app; the schema never calls it."""

    device = "cpu"
    dtype = "float32"
    loaded_model = None


def build_schema() -> dict:
    from backend.api.app import create_app
    from backend.settings import Settings

    app = create_app(Settings(), _SchemaOnlyEngine())  # type: ignore[arg-type]
    return app.openapi()


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH.name}")
    group.add_argument("--check", action="store_true", help="fail when it is out of date")
    args = parser.parse_args(argv)
    text = render(build_schema())
    if args.write:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if args.check:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
