"""The `adacomp` command: a thin layer over the Python API.

Errors a user can cause (AdacompError, including task errors) end in one line on stderr and exit
code 2; anything else is our bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence

from adacomp import __version__
from adacomp.environment import check_environment
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


def invoked_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Option name -> its flag, for the command that was run (`resume` -> `--resume`)."""
    flags: dict[str, str] = {}
    current: argparse.ArgumentParser | None = parser
    while current is not None:
        chosen = None
        for action in current._actions:
            if action.option_strings:
                flags[action.dest] = max(action.option_strings, key=len)
            elif isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(args, action.dest, None) or "")
        current = chosen
    return flags


_LEADING_OPTION = re.compile(r"^([a-z][a-z_]*):")
_ASSIGNED_OPTION = re.compile(r"\b([a-z][a-z_]*)=(True\b)?")


def as_command_line(message: str, flags: Mapping[str, str]) -> str:
    """The library names a job's options as Python does (`date: expected ...`, `resume=True`,
    `working_dir=DIR`);
    on the command line the same message names the flag the user types. Only options of the
    command that ran are renamed: a config field with the same name keeps its name."""

    def flag(match: re.Match[str], suffix: str) -> str:
        return flags[match[1]] + suffix if match[1] in flags else match[0]

    message = _LEADING_OPTION.sub(lambda m: flag(m, ":"), message, count=1)
    return _ASSIGNED_OPTION.sub(lambda m: flag(m, "" if m[2] else " "), message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()
        run: Callable[[argparse.Namespace], int] = args.run  # each command group sets its own
        return run(args)
    except AdacompError as exc:
        print(f"adacomp: error: {as_command_line(str(exc), invoked_flags(parser, args))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"adacomp: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
