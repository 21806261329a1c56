"""``diffusion-layers serve``: run the HTTP backend (FastAPI on uvicorn) for the Krita plugin."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP backend for the Krita plugin",
        description="Run the local generation server. Binds 127.0.0.1 unless told otherwise; "
        "any other address needs --token (or DIFFUSION_LAYERS_TOKEN).",
    )
    # None = 'not given' so that --config and the environment are not overridden.
    parser.add_argument("--model", help="default checkpoint name (or 'tiny')")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860; 0 = any free port)")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every route")
    parser.add_argument("--models-dir", help="folder with checkpoints/ controlnet/ lora/ vae/")
    parser.add_argument("--output-dir", help="where every result PNG is written")
    parser.add_argument(
        "--styles-dir", help="where styles are kept as JSON files (default: the data folder)"
    )
    parser.add_argument("--preload", action="store_true", help="load the model before serving")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--dtype", help="auto | float16 | bfloat16 | float32")
    parser.add_argument("--config", help="settings JSON file (flags override it)")
    parser.add_argument(
        "--compile",
        choices=("off", "background", "blocking"),
        help="torch.compile the UNet per size bucket on CUDA: background (first images eager, "
        "compiled ones swapped in when ready), blocking (wait for the compile) or off (default)",
    )
    parser.add_argument(
        "--allow-pickle", action="store_true", default=None, help="allow .ckpt/.pt checkpoints"
    )
    parser.add_argument("--max-request-mb", type=float, help="request body limit (MiB)")
    parser.add_argument("--keepalive-s", type=float, help="SSE keep-alive interval (seconds)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", help="... and this private key")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from backend.settings import Settings, SettingsError

    # 1. Settings: file < environment < flags, then checked (loopback / token rule first).
    try:
        settings = Settings.from_env_and_args(args)
        settings.check()
    except SettingsError as exc:
        log.error("cannot start: %s", exc)
        return 2

    # 2. Heavy imports only now.
    import uvicorn

    from backend.api.app import create_app
    from backend.engine.engine import Engine

    # 3. Engine and app; the worker thread starts (and preloads) in the app's lifespan.
    engine = Engine(settings.engine_config())
    app = create_app(settings, engine)
    scheme = "https" if settings.ssl_certfile else "http"
    log.info(
        "serving on %s://%s:%s (device %s, model %s, outputs in %s, token %s)",
        scheme,
        settings.host,
        settings.port,
        engine.device,
        settings.default_model or "default",
        settings.output_dir,
        "required" if settings.token else "off",
    )
    # 4. Serve until interrupted.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        timeout_graceful_shutdown=5,
    )
    return 0
