"""`adacomp supernet train | search` and `adacomp export`: thin wrappers over the jobs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_supernet_parsers(commands: Any) -> None:
    supernet = commands.add_parser("supernet", help="AdaSpring: train and search a weight-sharing supernet")
    actions = supernet.add_subparsers(dest="supernet_command", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="build the supernet from the task's model and ensemble-train it")
    search = actions.add_parser("search", help="evaluate its configurations on every target, no retraining")
    for parser in (train, search):
        parser.add_argument("config", type=Path, help="search config (YAML) with a `supernet:` section")
        parser.add_argument("--resume", action="store_true", help="continue where a killed run stopped")
    export = commands.add_parser("export", help="write the runtime bundle of a supernet search, register it")
    export.add_argument("config", type=Path, help="the search config the supernet was searched with")
    export.add_argument("--out", type=Path, help="bundle directory (default: <output.dir>/<name>/bundle)")
    supernet.set_defaults(run=run_supernet_command)
    export.set_defaults(run=run_export_command)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def run_supernet_command(args: argparse.Namespace) -> int:
    if args.supernet_command == "train":
        from adacomp.platform.supernet_training.training import train_supernet_job

        result = train_supernet_job(args.config, resume=args.resume, log=_say)
        accuracy = result.accuracy
        print(
            f"supernet trained: {result.steps} steps ({result.seconds:.0f} s this run); validation accuracy "
            f"largest {accuracy['largest']:.4f}, smallest {accuracy['smallest']:.4f}"
        )
        print(f"weights: {result.directory}/supernet.safetensors; MLflow run {result.run_id}")
        return 0
    from adacomp.platform.supernet.search import supernet_search

    found = supernet_search(args.config, resume=args.resume, log=_say)
    feasible = sum(r.feasible for r in found.records)
    print(
        f"\nsupernet search {found.config.name!r}: {len(found.records)} configurations "
        f"({feasible} feasible), {found.seconds:.0f} s"
    )
    for device in found.config.targets:
        print(f"\nPareto front on {device}:")
        print(found.table(device))
    print(f"\nresults: {found.directory}/ (front_<device>.csv, pareto_<device>.png, models/)")
    print(f"MLflow run {found.run_id}; next: adacomp export {args.config}")
    return 0


def run_export_command(args: argparse.Namespace) -> int:
    from adacomp.platform.supernet.bundle import export_bundle

    result = export_bundle(args.config, out=args.out, log=_say)
    print(f"bundle: {result.directory} ({len(result.manifest.configurations)} configurations)")
    print(f"registered as {result.registered_model}")
    print(f"try it: adacomp runtime simulate {result.directory}")
    return 0
