"""``diffusion-layers bench``: plain diffusers vs our server, end to end, in one process run."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark our HTTP path against a plain diffusers pipeline",
        description="Builds full-size SD1.5/SDXL architectures with random weights (or uses "
        "real ones placed under --models-dir), times the plain diffusers baseline and our "
        "server (POST /v1/jobs -> layer; the live scenario frame by frame through "
        "POST /v1/live/{session}/frames) in one run, prints a table and writes JSON.",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models, 64 px (CPU, CI)")
    parser.add_argument("--out", default="bench.json", help="JSON report path")
    parser.add_argument("--table", help="also write the Markdown table to this file")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto | float16 | bfloat16 | float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument(
        "--live-frames",
        type=int,
        default=20,
        help="timed frames of the live scenario, each a fresh canvas (median -> fps)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        dest="scenarios",
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("--models-dir", help="keep/reuse the benchmark models here")
    parser.add_argument("--transfer-size", type=int, default=2048, help="transfer region side")
    parser.add_argument(
        "--warmup-s", type=float, default=0.0, help="keep warming our path up this long"
    )
    parser.add_argument(
        "--compile", choices=("off", "background", "blocking"), help="engine compile mode"
    )
    parser.add_argument("--budget-s", type=float, help="skip the work left after this many seconds")
    parser.add_argument("--skip-plain", action="store_true", help="only time our server")
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run each scenario in its own process with its own deadline (killed past it, "
        "recorded as timed out); the JSON is rewritten as results come (GPU runs)",
    )
    parser.add_argument(
        "--scenario-budget",
        action="append",
        metavar="[NAME=]SECONDS",
        help="with --isolate: a scenario's deadline (repeatable; SECONDS alone: every one)",
    )
    parser.add_argument(
        "--accel-out",
        help="with --isolate: also run the acceleration check (its own deadline: "
        "--scenario-budget accel=SECONDS), writing this JSON",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from backend.bench.harness import BenchOptions, run_bench
    from backend.bench.report import format_table, write_json, write_text

    options = BenchOptions(
        tiny=args.tiny,
        device=args.device,
        dtype=args.dtype,
        repeats=args.repeats,
        live_frames=args.live_frames,
        scenarios=args.scenarios,
        models_dir=args.models_dir,
        transfer_size=args.transfer_size,
        warmup_s=args.warmup_s,
        compile=args.compile,
        skip_plain=args.skip_plain,
        budget_s=args.budget_s,
    )
    if args.isolate or args.accel_out or args.scenario_budget:
        return _run_isolated(args, options)

    def save(report: dict) -> None:  # after every side of every scenario
        write_json(report, args.out)
        if args.table:
            write_text(format_table(report) + "\n", args.table)

    try:
        report = run_bench(options, on_report=save)
    except ValueError as exc:
        log.error("bench: %s", exc)
        return 2
    print(format_table(report))
    log.info("wrote %s", args.out)
    return 1 if report["errors"] else 0


def _run_isolated(args: argparse.Namespace, options) -> int:
    from backend.bench.isolated import IsolatedOptions, parse_budgets, run_isolated
    from backend.bench.report import format_table

    try:
        default, named = parse_budgets(args.scenario_budget)
        isolated = IsolatedOptions(
            bench=options,
            out=args.out,
            table=args.table,
            total_budget_s=options.budget_s,
            budgets_s=named,
            default_budget_s=default,
            accel_out=args.accel_out,
        )
        options.budget_s = None  # the total budget is the runner's; each step has its own
        report = run_isolated(isolated)
    except ValueError as exc:
        log.error("bench: %s", exc)
        return 2
    print(format_table(report))
    log.info("wrote %s", args.out)
    return 1 if report["errors"] else 0
