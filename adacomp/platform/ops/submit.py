"""`adacomp submit CONFIG --address http://HEAD:8265`: a search (or a nightly run) as a Ray job.

The job's entrypoint is the same command a user runs by hand (`python -m adacomp search CONFIG
--resume`), started by Ray's job server on the head node, in a working directory Ray uploads
from here (the project checkout, without environments, results or models). Everything a job
cannot see from here is checked before submitting: the config must parse, live inside the
uploaded directory, and write to an absolute `output.dir` (a job's own working directory is a
temporary copy that is gone when it ends). A submission id names the job; submitting with an id
that exists follows that job instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adacomp.errors import AdacompError, first_line
from adacomp.platform.cluster import prepare_auth
from adacomp.platform.search_config import SearchConfig, load_search_config

# Never uploaded: environments, VCS data, results and models (a job writes to output.dir).
EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.egg-info",
    ".adacomp",
    "runs",
    "out",
    "benchmarks/results",
    "*.onnx",
    "*.db",
    "*.safetensors",
)
Command = Literal["search", "nightly"]


@dataclass(frozen=True)
class JobSpec:
    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any]


def job_spec(
    config_path: Path,
    config: SearchConfig,
    working_dir: Path,
    *,
    command: Command = "search",
    submission_id: str | None = None,
) -> JobSpec:
    """The job for `config`: checks what a job on the cluster cannot see from here."""
    working_dir = working_dir.resolve()
    try:
        relative = config_path.resolve().relative_to(working_dir)
    except ValueError:
        raise AdacompError(
            f"{config_path}: outside the working directory {working_dir} that is uploaded to the "
            "cluster; move it there or pass working_dir=DIR"
        ) from None
    if not config.output.dir.is_absolute():
        raise AdacompError(
            f"output.dir: {config.output.dir} is relative, and a job runs in a temporary copy of the "
            "working directory; give an absolute path on storage the cluster shares"
        )
    flags = " --resume --quiet" if command == "search" else ""
    entrypoint = f"python -m adacomp {command} {shlex.quote(relative.as_posix())}{flags}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return JobSpec(
        submission_id=submission_id or f"adacomp-{command}-{config.name}-{stamp}",
        entrypoint=entrypoint,
        runtime_env={
            "working_dir": str(working_dir),
            "excludes": list(EXCLUDES),
            "env_vars": {"PYTHONUNBUFFERED": "1"},
        },
    )


def _client(address: str) -> Any:
    if not address.startswith(("http://", "https://")):
        raise AdacompError(f"address: expected the job server's URL (http://HEAD:8265), got {address!r}")
    prepare_auth()  # the same rule as every command that joins a cluster
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # connection refused, not a Ray dashboard, version mismatch, auth
        reason = first_line(exc)
        if "authentication token" in reason:
            raise AdacompError(
                f"address: {address} requires Ray's auth token; copy the head's ~/.ray/auth_token "
                "to this machine (or set RAY_AUTH_TOKEN)"
            ) from None
        raise AdacompError(f"address: no Ray job server at {address} ({reason})") from None


def submit(
    config_path: Path,
    address: str,
    *,
    working_dir: Path = Path("."),
    command: Command = "search",
    submission_id: str | None = None,
    follow: bool = True,
    out: Callable[[str], None] = lambda text: print(text, end="", flush=True),
    say: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> int:
    """Submits (or re-attaches to) the job; with `follow`, streams its logs and returns 0 when it
    succeeded, 1 otherwise. Without `follow`, returns 0 once it is submitted."""
    config = load_search_config(config_path)
    spec = job_spec(config_path, config, working_dir, command=command, submission_id=submission_id)
    client = _client(address)
    existing = _job_status(client, spec.submission_id)
    if existing is None:
        _submit_once_an_agent_answers(client, spec, address)
        say(f"submitted {spec.submission_id} to {address}: {spec.entrypoint}")
    else:
        say(f"{spec.submission_id} exists on {address} ({existing}): following it, not submitting again")
    if not follow:
        say(f"follow it with: ray job logs -f {spec.submission_id} --address {address}")
        return 0
    try:
        asyncio.run(_stream_logs(client, spec.submission_id, out))
    except KeyboardInterrupt:
        say(
            f"stopped following; {spec.submission_id} goes on (ray job logs -f / ray job stop "
            f"{spec.submission_id} --address {address})"
        )
        return 130
    status = _wait_until_done(client, spec.submission_id)
    info = client.get_job_info(spec.submission_id)
    say(f"{spec.submission_id}: {status}" + (f" ({info.message})" if info.message else ""))
    return 0 if status == "SUCCEEDED" else 1


NO_AGENT_YET = "No available agent to submit job"


def _submit_once_an_agent_answers(client: Any, spec: JobSpec, address: str, patience_s: float = 90.0) -> None:
    """A head that has just started serves its dashboard seconds before its job agent: the job
    server then refuses with "No available agent ..., try again later". That is a state of the
    cluster, not an error of the user's: retry until the agent answers (or `patience_s` runs out)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            client.submit_job(
                entrypoint=spec.entrypoint, runtime_env=spec.runtime_env, submission_id=spec.submission_id
            )
            return
        except RuntimeError as exc:
            if NO_AGENT_YET not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise AdacompError(
                    f"address: the job server at {address} has no job agent after {patience_s:.0f} s; "
                    "is the head node's dashboard agent running?"
                ) from None
            time.sleep(1.0)


def _job_status(client: Any, submission_id: str) -> str | None:
    try:
        return _name(client.get_job_status(submission_id))
    except RuntimeError:  # the job server answers 404: no such job
        return None


async def _stream_logs(client: Any, submission_id: str, out: Callable[[str], None]) -> None:
    async for lines in client.tail_job_logs(submission_id):
        out(lines)


def _wait_until_done(client: Any, submission_id: str, timeout_s: float = 60.0) -> str:
    """The log stream ends when the job does; its status may lag by a moment."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(submission_id)
        done = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        if done or time.monotonic() > deadline:
            return _name(status)
        time.sleep(0.5)


def _name(status: Any) -> str:
    return str(getattr(status, "value", status))
