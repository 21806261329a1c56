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
        "--allow-pickle",
        action="store_true",
        default=None,
        help="allow pickle files: .ckpt/.pt checkpoints, .pth upscalers that the safe loader refuses",
    )
    parser.add_argument(
        "--no-hires",
        dest="hires",
        action="store_false",
        default=None,
        help="no automatic two-pass generation for regions much larger than the model's size",
    )
    parser.add_argument("--max-request-mb", type=float, help="request body limit (MiB)")
    parser.add_argument("--keepalive-s", type=float, help="SSE keep-alive interval (seconds)")
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", help="... and this private key")
    parser.add_argument(
        "--tokens-file",
        help="one 'name token' line per artist; re-read on change (delete a line to revoke)",
    )
    parser.add_argument(
        "--max-queued-per-client", type=int, help="queued jobs one artist may have (0 = no limit)"
    )
    cluster = parser.add_argument_group(
        "studio cluster (needs the 'cluster' extra; docs/cluster.md)"
    )
    cluster.add_argument(
        "--cluster",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run as a Ray Serve application: alone, a local Ray on 127.0.0.1; with ADDRESS "
        "('auto' or head:6379), the Ray cluster started with 'ray start'",
    )
    cluster.add_argument("--replicas", type=int, default=1, help="generation replicas")
    cluster.add_argument("--min-replicas", type=int, help="autoscale: fewest replicas")
    cluster.add_argument("--max-replicas", type=int, help="autoscale: most replicas")
    cluster.add_argument(
        "--replica-gpus",
        type=float,
        help="GPUs per generation replica (default 1; 0 on --device cpu)",
    )
    cluster.add_argument(
        "--replica-cpus", type=float, help="CPUs per generation replica (default 1 when no GPU)"
    )
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

    if getattr(args, "cluster", None):
        return run_cluster(settings, args)

    # 2. Heavy imports only now.
    from backend.api.app import create_app
    from backend.commands.stopping_server import serve as serve_until_stopped
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
    # 4. Serve until interrupted; a stop fails the running job at once (stopping_server).
    serve_until_stopped(
        app,
        app.state.context.queue.begin_stop,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        timeout_graceful_shutdown=5,
    )
    return 0


def run_cluster(settings, args: argparse.Namespace) -> int:
    """``--cluster``: the same API as a Ray Serve application (backend/cluster/)."""
    try:
        from backend.cluster.app import (
            ClusterError,
            ClusterOptions,
            deploy,
            shutdown,
            start_ray,
        )
    except ImportError as exc:
        log.error("cannot start: --cluster needs Ray Serve: pip install '.[cluster]' (%s)", exc)
        return 2
    gpus = args.replica_gpus
    if gpus is None:
        gpus = 0.0 if settings.device == "cpu" else 1.0
    cpus = args.replica_cpus if args.replica_cpus is not None else (0.0 if gpus else 1.0)
    options = ClusterOptions(
        address=None if args.cluster == "local" else args.cluster,
        replicas=args.replicas,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        num_gpus=gpus,
        num_cpus=cpus,
    )
    try:
        options.check()
    except ClusterError as exc:
        log.error("cannot start: %s", exc)
        return 2
    log.info(
        "serving the cluster on %s://%s:%s (%s generation replicas, token %s)",
        "https" if settings.ssl_certfile else "http",
        settings.host,
        settings.port,
        options.replicas
        if options.min_replicas is None
        else f"{options.min_replicas}..{options.max_replicas}",
        "required" if settings.token or settings.tokens_file else "off",
    )
    import signal

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    try:
        start_ray(options)
        # After ray.init (which installs its own): terminate = Ctrl+C, a clean shutdown.
        signal.signal(signal.SIGTERM, stop)
        deploy(settings, options, blocking=True)
    except KeyboardInterrupt:
        log.info("stopping")
    except ClusterError as exc:
        log.error("cannot start: %s", exc)
        return 2
    finally:
        shutdown(options)
    return 0
