"""`adacomp search | pareto | ui`: thin wrappers over `search()`, `open_search()` and MLflow's UI."""

from __future__ import annotations

import argparse
import os
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
    ui.add_argument(
        "--workers",
        type=integer(1, 64),
        default=1,
        help="server processes (default: 1; each holds a few hundred MiB, one serves one user well)",
    )
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
    files = "front.md, front.csv, front.parquet, pareto.png, pareto.html, models/"
    print(f"\nresults: {result.out_dir}/ ({files})")
    print_links(result.tracking_uri, result.run_id)
    return 0


def print_links(tracking_uri: str | None, run_id: str | None, ui: str | None = None) -> None:
    """Where the search is in the MLflow UI: the command that serves it, then deep links."""
    from adacomp.platform.results.mlflow_ui import DEFAULT_UI
    from adacomp.platform.results.tracking import search_links

    if tracking_uri is None or run_id is None:
        return
    if ui is None:
        print(f"MLflow run {run_id}; serve the UI with:  adacomp ui --store {tracking_uri}")
    for label, url in search_links(tracking_uri, run_id, ui or DEFAULT_UI).items():
        print(f"  {label + ':':18} {url}")


def run_pareto_command(args: argparse.Namespace) -> int:
    from adacomp.platform.results.snapshot import open_search

    snapshot = open_search(args.search, args.tracking_uri)
    if args.csv:
        print(snapshot.front.to_csv(index=False))
        return 0
    print(snapshot.summary())
    print(snapshot.table())
    if snapshot.run_id is not None and (snapshot.tracking_uri or "").startswith("sqlite:///"):
        print()  # a local store answers at once; a server that is down would keep this waiting
        print_links(snapshot.tracking_uri, snapshot.run_id)
    return 0


def ui_command(args: argparse.Namespace) -> list[str]:
    from adacomp.platform.results.tracking import default_tracking_uri

    store = args.store or default_tracking_uri(args.dir)
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", store,
        "--host", args.host,
        "--port", str(args.port),
        "--workers", str(args.workers),
    ]  # fmt: skip


def ui_environment() -> dict[str, str]:
    """MLflow's server also starts a job runner for GenAI scorers by default: a process adacomp
    never uses, a few hundred MiB on a small machine."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def run_ui_command(args: argparse.Namespace) -> int:
    from adacomp.platform.results.tracking import recent_searches

    command = ui_command(args)
    store = command[command.index("--backend-store-uri") + 1]
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    ui = f"http://{host}:{args.port}"
    print(f"MLflow UI on {ui} (store {store}); Ctrl-C stops it", file=sys.stderr)
    if not store.startswith("sqlite:///") or Path(store.removeprefix("sqlite:///")).exists():
        try:
            for name, run_id in recent_searches(store):
                print(f"search {name}:")
                print_links(store, run_id, ui)
        except Exception as exc:  # the links are a courtesy: the UI itself still starts
            from adacomp.errors import first_line

            print(f"(no links: the store did not list its searches: {first_line(exc)})", file=sys.stderr)
        sys.stdout.flush()
    # MLflow's server replaces this process: nothing of adacomp's (torch, the search code) stays
    # in memory beside it, and Ctrl-C and signals reach the server itself.
    os.execve(command[0], command, ui_environment())
