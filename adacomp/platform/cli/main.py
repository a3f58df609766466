"""The `adacomp` command: a thin layer over the Python API.

Errors a user can cause (AdacompError, including task errors) end in one line on stderr and exit
code 2; anything else is our bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from adacomp import __version__
from adacomp.errors import AdacompError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adacomp", description="Usage-driven, adaptive model compression.")
    parser.add_argument("--version", action="version", version=f"adacomp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from adacomp.platform.cli.farm import add_farm_parser
    from adacomp.platform.cli.model import add_model_parsers
    from adacomp.platform.cli.ops import add_ops_parsers
    from adacomp.platform.cli.runtime import add_runtime_parser
    from adacomp.platform.cli.search import add_search_parsers
    from adacomp.platform.cli.supernet import add_supernet_parsers

    add_model_parsers(commands)
    add_farm_parser(commands)
    add_search_parsers(commands)
    add_supernet_parsers(commands)
    add_runtime_parser(commands)
    add_ops_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run: Callable[[argparse.Namespace], int] = args.run  # each command group sets its own
        return run(args)
    except AdacompError as exc:
        print(f"adacomp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"adacomp: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
