"""`adacomp submit` against a real Ray head started with `ray start --head` on loopback (the ops
tests' token-auth cluster, `ray_cluster` in tests/ops/conftest.py, whose head runs while Ray's
default agent port is taken): the search runs as a Ray job (uploaded working directory, runtime
env, submission id), its logs are followed to the end, and the exit code is the job's.

A job that succeeds, and the same submission id again, is test_cluster_join.py's
`test_submit_runs_the_same_search_as_a_job` (one job on the cluster for both modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adacomp.errors import AdacompError
from adacomp.platform.ops.submit import job_spec
from adacomp.platform.search_config import load_search_config
from tests.helpers.ray_cluster import Cluster
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]


def _write_job(directory: Path, runs: Path, **changes: object) -> Path:
    """A working directory holding a tiny task module and a two-trial search config."""
    (directory / "tests" / "platform").mkdir(parents=True)
    for package in ("tests", "tests/platform"):
        (directory / package / "__init__.py").write_text("")
    source = REPO / "tests" / "platform" / "tiny_task.py"
    (directory / "tests" / "platform" / "tiny_task.py").write_text(source.read_text())
    config = {
        "name": "job",
        "task": "tests.platform.tiny_task:tiny_digits",
        "targets": ["pixel4"],
        "objectives": [{"metric": "accuracy"}, {"metric": "latency", "target": "pixel4"}],
        "finetune": {"steps": 5},
        "trials": 2,
        "concurrency": 2,
        "strategy": "random",
        "output": {"dir": str(runs)},
        **changes,
    }
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _adacomp(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adacomp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(cluster: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`adacomp submit job.yaml --address DASHBOARD ARGS` as a client of `cluster` (its token's path)."""
    return _adacomp("submit", "job.yaml", "--address", cluster.dashboard, *args, cwd=cwd, env=cluster.env)


@pytest.mark.slow
def test_a_failing_job_fails_the_command(ray_cluster: Cluster, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _write_job(work, tmp_path / "runs", targets=["pixel4"], task="tests.platform.tiny_task:not_a_task")
    done = _submit(ray_cluster, "--no-follow", cwd=work)
    assert done.returncode == 0 and "follow it with: ray job logs -f" in done.stderr
    job_id = done.stderr.split("submitted ", 1)[1].split()[0]
    followed = _submit(ray_cluster, "--submission-id", job_id, cwd=work)
    assert followed.returncode == 1
    assert f"{job_id}: FAILED" in followed.stderr
    assert "not_a_task" in followed.stdout  # the job's one-line error reached us through its log


def test_what_a_job_cannot_see_is_refused_before_submitting(tmp_path: Path) -> None:
    work = tmp_path / "work"
    path = _write_job(work, tmp_path / "runs")
    config = load_search_config(path)
    spec = job_spec(path, config, work, submission_id="x")
    assert spec.entrypoint == "python -m adacomp search job.yaml --resume --quiet"
    assert spec.runtime_env["working_dir"] == str(work.resolve()) and ".venv" in spec.runtime_env["excludes"]
    with pytest.raises(AdacompError, match="outside the working directory"):
        job_spec(path, config, tmp_path / "elsewhere")
    relative = config.model_copy(update={"output": config.output.model_copy(update={"dir": Path("runs")})})
    with pytest.raises(AdacompError, match=r"output\.dir: runs is relative"):
        job_spec(path, relative, work)
    done = _adacomp("submit", "job.yaml", "--address", "127.0.0.1:1", cwd=work, timeout=60)
    assert done.returncode == 2 and "--address: expected the job server's URL" in done.stderr
    done = _adacomp(
        "submit", "job.yaml", "--address", f"http://127.0.0.1:{free_port()}", cwd=work, timeout=60
    )
    assert done.returncode == 2 and "no Ray job server at" in done.stderr
    assert done.stderr.strip().count("\n") == 0


class _HeadStillStarting:
    """Stands in for Ray's JobSubmissionClient at the one edge a real head cannot be held at on
    purpose: the seconds after `ray start --head` when the dashboard answers and the job agent
    does not yet (seen here on a busy machine: the job server says "No available agent")."""

    def __init__(
        self, refusals: int, error: str = "No available agent to submit job, please try again later.."
    ):
        self.refusals, self.error, self.submitted = refusals, error, 0

    def submit_job(self, **job: object) -> str:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError(f"Request failed with status code 500: {self.error}")
        self.submitted += 1
        return str(job["submission_id"])


def test_a_head_whose_job_agent_is_not_up_yet_is_waited_for(tmp_path: Path) -> None:
    from adacomp.platform.ops.submit import _submit_once_an_agent_answers

    path = _write_job(tmp_path / "work", tmp_path / "runs")
    spec = job_spec(path, load_search_config(path), tmp_path / "work", submission_id="x")
    starting = _HeadStillStarting(refusals=2)
    _submit_once_an_agent_answers(starting, spec, "http://head:8265", patience_s=30)
    assert starting.submitted == 1 and starting.refusals == 0

    with pytest.raises(AdacompError, match="has no job agent after 0 s"):
        _submit_once_an_agent_answers(_HeadStillStarting(refusals=99), spec, "http://head:8265", patience_s=0)
    with pytest.raises(RuntimeError, match="bad runtime_env"):  # other refusals are not retried
        _submit_once_an_agent_answers(_HeadStillStarting(1, "bad runtime_env"), spec, "http://head:8265")
