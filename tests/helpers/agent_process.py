"""`Agent`, a real `adacomp farm agent` process on loopback, with TOKEN and QUICK: for the agent tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from adacomp.device_farm import MeasureSettings

TOKEN = "s3cret-token-for-tests-0123456789"
QUICK = MeasureSettings(warmup_runs=1, min_runs=5, max_runs=20, max_cv=10)


class Agent:
    """`adacomp farm agent` as a real process on a free loopback port.

    Its stderr (one line per request) goes to a file, not a pipe: nobody reads a pipe during
    the test, and a full one would stall the agent.
    """

    def __init__(self, tmp: Path, *extra: str, cwd: Path | None = None, token_mode: int = 0o600) -> None:
        self.token_file = tmp / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.token_file.chmod(token_mode)
        self.log_file = tmp / "agent.log"
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "adacomp",
                    "farm",
                    "agent",
                    "--port",
                    "0",
                    "--token-file",
                    str(self.token_file),
                    "--name",
                    "board",
                    "--class",
                    "rpi4",
                    *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=cwd,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://[\d.]+:(\d+)", line)
        assert match, f"agent did not start: {line!r} {self.log()}"
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
