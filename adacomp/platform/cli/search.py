"""`adacomp search | pareto | ui`: thin wrappers over `search()`, `open_search()` and MLflow's UI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from adacomp.platform.cli.args import integer


def add_search_parsers(commands: Any) -> None:
    search = commands.add_parser("search", help="search for the Pareto front of compressed models")
    search.add_argument("config", type=Path, help="search config (YAML), e.g. examples/digits.yaml")
    search.add_argument(
        "--resume", action="store_true", help="continue this search if it exists (a new one starts otherwise)"
    )
    search.add_argument(
        "--address", help="join this Ray cluster instead of starting Ray here (or RAY_ADDRESS)"
    )
    search.add_argument("--quiet", action="store_true", help="no live progress view")
    search.add_argument(
        "--init-policy",
        type=Path,
        metavar="DIR",
        help="strategy rl: start the agent from one saved by another search (its rl_agent/ directory)",
    )

    pareto = commands.add_parser("pareto", help="print the Pareto front of a finished or running search")
    pareto.add_argument("search", metavar="RUN_OR_DIR", help="a search directory or its MLflow run id")
    pareto.add_argument(
        "--tracking-uri", help="MLflow store holding the run (default: sqlite:///runs/mlflow.db)"
    )
    pareto.add_argument("--csv", action="store_true", help="print the front as CSV")

    ui = commands.add_parser("ui", help="start the MLflow UI on the project's store")
    ui.add_argument("--store", help="tracking store URI (default: sqlite:///<dir>/mlflow.db)")
    ui.add_argument(
        "--dir", type=Path, default=Path("runs"), help="output.dir of your searches (default: runs)"
    )
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    ui.add_argument("--port", type=integer(1, 65535), default=5000)
    search.set_defaults(run=run_search_command)
    pareto.set_defaults(run=run_pareto_command)
    ui.set_defaults(run=run_ui_command)


def run_search_command(args: argparse.Namespace) -> int:
    from adacomp.errors import AdacompError
    from adacomp.platform.search.job import search
    from adacomp.platform.search_config import load_search_config

    log = lambda message: print(message, file=sys.stderr)  # noqa: E731 - progress goes to stderr
    config = load_search_config(args.config)
    if args.init_policy is not None:
        if config.strategy != "rl":
            raise AdacompError(
                f"--init-policy: only the rl strategy starts from a saved agent ({args.config} uses "
                f"strategy {config.strategy!r})"
            )
        rl = config.rl.model_copy(update={"init_policy": args.init_policy.absolute()})
        config = config.model_copy(update={"rl": rl})
    result = search(config, resume=args.resume, address=args.address, progress=not args.quiet, log=log)
    failed = sum(r.failed for r in result.records)
    print(
        f"\nsearch {result.config.name!r}: {len(result.records)} trials ({failed} failed), "
        f"{len(result.front_records)} on the Pareto front, hypervolume {result.hypervolume:.4f}, "
        f"{result.seconds:.0f} s"
    )
    print(result.table())
    best = result.best
    if best is not None:
        print(f"\nbest feasible by utility: trial {best.number} ({best.utility:.4f}): {best.plan}")
        if result.registered_model:
            print(f"registered as {result.registered_model}")
    else:
        print("\nno feasible trial: loosen the constraints or give the search more trials")
    print(f"\nresults: {result.out_dir}/ (front.csv, front.parquet, pareto.png, pareto.html, models/)")
    print(f"MLflow run {result.run_id}; open it with:  adacomp ui --store {result.tracking_uri}")
    return 0


def run_pareto_command(args: argparse.Namespace) -> int:
    from adacomp.platform.results.snapshot import open_search

    snapshot = open_search(args.search, args.tracking_uri)
    if args.csv:
        print(snapshot.front.to_csv(index=False))
        return 0
    print(snapshot.summary())
    print(snapshot.table())
    return 0


def ui_command(args: argparse.Namespace) -> list[str]:
    from adacomp.platform.results.tracking import default_tracking_uri

    store = args.store or default_tracking_uri(args.dir)
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", store,
        "--host", args.host,
        "--port", str(args.port),
    ]  # fmt: skip


def run_ui_command(args: argparse.Namespace) -> int:
    command = ui_command(args)
    print(
        f"MLflow UI on http://{args.host}:{args.port} (store {command[5]}); Ctrl-C stops it", file=sys.stderr
    )
    try:
        return subprocess.call(command, env=os.environ.copy())
    except KeyboardInterrupt:
        return 0
