"""The README's cluster and nightly commands are the ones tests/ops runs: the `mlflow server`
line verbatim (test_mlflow_server.py), `adacomp submit` against a real head (test_submit.py),
`adacomp nightly` over three nights (test_nightly.py); here, that they still parse as written."""

from __future__ import annotations

import shlex

from adacomp.platform.cli.main import build_parser
from tests.helpers.readme_console import readme_console_lines


def test_readme_console_commands_are_the_tested_ones() -> None:
    lines = readme_console_lines()
    assert lines[0] == "mkdir -p runs"
    assert lines[1].startswith("mlflow server --backend-store-uri sqlite:")
    commands = {}
    for line in lines:
        if line.startswith("adacomp "):
            args = build_parser().parse_args(shlex.split(line)[1:])
            commands[args.command] = args
    assert set(commands) == {"submit", "nightly"}
    assert commands["submit"].address.startswith("http://") and commands["nightly"].threshold == 0.05
