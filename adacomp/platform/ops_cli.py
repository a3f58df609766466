"""`adacomp submit` (a search as a Ray job on a cluster) and `adacomp nightly` (tonight's search,
compared with last night's)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_ops_parsers(commands: Any) -> None:
    submit = commands.add_parser("submit", help="run a search as a Ray job on a cluster and follow it")
    submit.add_argument("config", type=Path, help="search config (YAML) inside the working directory")
    submit.add_argument("--address", required=True, help="the cluster's job server, e.g. http://HEAD:8265")
    submit.add_argument(
        "--working-dir", type=Path, default=Path("."), help="uploaded to the cluster (default: here)"
    )
    submit.add_argument("--submission-id", help="the job's name (default: adacomp-<command>-<name>-<time>)")
    submit.add_argument(
        "--nightly", action="store_true", help="submit `adacomp nightly CONFIG` instead of a search"
    )
    submit.add_argument("--no-follow", action="store_true", help="submit and return")


def run_submit_command(args: argparse.Namespace) -> int:
    from adacomp.platform.submit import submit

    return submit(
        args.config,
        args.address,
        working_dir=args.working_dir,
        command="nightly" if args.nightly else "search",
        submission_id=args.submission_id,
        follow=not args.no_follow,
    )
