"""`adacomp submit` (a search as a Ray job on a cluster) and `adacomp nightly` (tonight's search,
compared with last night's)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from adacomp.platform.cli.args import number


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

    nightly = commands.add_parser(
        "nightly", help="tonight's search, warm-started from last night's and compared with it"
    )
    nightly.add_argument("config", type=Path, help="search config (YAML)")
    nightly.add_argument(
        "--threshold",
        type=number(0, 1),
        default=0.05,
        help="relative drop that counts as a regression (default 0.05: 5 %%)",
    )
    nightly.add_argument("--date", help="the night, YYYY-MM-DD (default: today, UTC)")
    nightly.add_argument("--address", help="join this Ray cluster instead of starting Ray here")
    submit.set_defaults(run=run_submit_command)
    nightly.set_defaults(run=run_nightly_command)


def run_submit_command(args: argparse.Namespace) -> int:
    from adacomp.platform.ops.submit import submit

    return submit(
        args.config,
        args.address,
        working_dir=args.working_dir,
        command="nightly" if args.nightly else "search",
        submission_id=args.submission_id,
        follow=not args.no_follow,
    )


def run_nightly_command(args: argparse.Namespace) -> int:
    from adacomp.platform.ops.nightly import EXIT_REGRESSION, nightly

    result = nightly(
        args.config,
        date=args.date,
        threshold=args.threshold,
        address=args.address,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(result.report_path.read_text(), end="")
    print(f"\nreport: {result.report_path} (MLflow run {result.report_run_id})")
    if result.regressions:
        print(f"regression: {', '.join(c.what for c in result.regressions)}", file=sys.stderr)
        return EXIT_REGRESSION
    return 0
