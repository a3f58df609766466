"""Syntax checks for the nightly schedules in deploy/: cron.d, systemd units, KubeRay RayCronJob.

A broken schedule fails silently (nothing runs at 02:30), so each file is parsed here the way its
consumer would, as far as that is possible offline.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRON_FILE = DEPLOY / "cron" / "adacomp-nightly"
SERVICE = DEPLOY / "systemd" / "adacomp-nightly.service"
TIMER = DEPLOY / "systemd" / "adacomp-nightly.timer"
RAYCRONJOB = DEPLOY / "kuberay" / "adacomp-nightly-raycronjob.yaml"

# Field ranges and names as in crontab(5); day-of-week 7 is Sunday like 0.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: number for number, name in enumerate(MONTHS, 1)}),
    ("day of week", 0, 7, {name: number for number, name in enumerate(WEEKDAYS)}),
)
ONE_DAY_S = 24 * 3600
# The RayCronJob spec of KubeRay 1.6 (ray.io_raycronjobs.yaml in ray-project/kuberay). Later
# releases add `timeZone` (kuberay#4762); allow it here once the manifest requires one of them.
RAYCRONJOB_SPEC_FIELDS = {"schedule", "jobTemplate", "suspend"}


class CronSyntaxError(ValueError):
    """What crontab(5) would refuse to load."""


def cron_field_values(field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """The values one cron time field selects; CronSyntaxError when cron would reject it."""
    values: set[int] = set()

    def number(token: str) -> int:
        value = names.get(token.lower()) if token.isalpha() else int(token) if token.isdigit() else None
        if value is None or not low <= value <= high:
            raise CronSyntaxError(f"{token!r} is not in {low}-{high}")
        return value

    for item in field.split(","):
        span, _, step_text = item.partition("/")
        if step_text and not (step_text.isdigit() and int(step_text) > 0):
            raise CronSyntaxError(f"bad step in {item!r}")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = number(start), number(end)
            if first > last:
                raise CronSyntaxError(f"reversed range {item!r}")
        else:
            first = number(span)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def parse_cron_schedule(expression: str) -> list[set[int]]:
    fields = expression.split()
    if len(fields) != 5:
        raise CronSyntaxError(f"expected 5 time fields, got {len(fields)} in {expression!r}")
    return [
        cron_field_values(f, low, high, names)
        for f, (_, low, high, names) in zip(fields, CRON_FIELDS, strict=True)
    ]


def runs_once_a_day(expression: str) -> bool:
    minutes, hours, days, months, weekdays = parse_cron_schedule(expression)
    return len(minutes) == len(hours) == 1 and len(days) == 31 and len(months) == 12 and len(weekdays) >= 7


@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "*/15 0-6,22-23 1,15 1-6 mon", "0 0 * * 7", "5-55/10 * * * *"]
)
def test_the_cron_validator_accepts_valid_expressions(expression: str) -> None:
    """The validator is itself code: it must accept what cron accepts..."""
    parse_cron_schedule(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "60 2 * * *",
        "30 24 * * *",
        "30 2 0 * *",
        "30 2 * 13 *",
        "30 2 * * 8",
        "*/0 * * * *",
        "30 2 * *",
        "3-1 * * * *",
        "x * * * *",
    ],
)
def test_the_cron_validator_rejects_invalid_expressions(expression: str) -> None:
    """...and reject what cron rejects, or the schedule checks below would prove nothing."""
    with pytest.raises(CronSyntaxError):
        parse_cron_schedule(expression)


def cron_entries() -> list[tuple[str, str, str]]:
    """(schedule, user, command) of each job line; comments and VAR=value lines skipped."""
    entries = []
    for line in CRON_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"a cron.d line needs 5 time fields, a user and a command: {line!r}"
        entries.append((" ".join(fields[:5]), fields[5], fields[6]))
    return entries


def test_the_cron_file_runs_the_nightly_once_a_day_under_a_lock() -> None:
    """flock -n: a night still running makes the next one skip, never run alongside it."""
    [(schedule, user, command)] = cron_entries()
    assert runs_once_a_day(schedule)
    assert user == "adacomp"
    assert "%" not in command, "cron turns an unescaped % into a newline"
    assert re.search(r"\bflock -n\b", command)
    assert re.search(r"\bcd /\S+ &&", command)
    assert re.search(r"flock -n .*adacomp nightly \S+", command), "the lock must wrap the nightly itself"
    assert ">> /var/log/adacomp/nightly.log 2>&1" in command


def test_the_cron_command_is_valid_shell() -> None:
    """cron hands the command to SHELL (bash here) only at 02:30; a syntax error would show then."""
    assert "SHELL=/bin/bash" in CRON_FILE.read_text().splitlines()
    for _, _, command in cron_entries():
        result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr


def test_the_cron_file_is_installable_in_cron_d() -> None:
    """cron silently ignores /etc/cron.d files with dots in the name or no final newline."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", CRON_FILE.name)
    assert CRON_FILE.read_text().endswith("\n")


def read_unit(path: Path) -> configparser.ConfigParser:
    # systemd units repeat keys (ExecStart=, Environment=) and are case-sensitive.
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_the_service_is_a_oneshot_run_of_the_nightly() -> None:
    """Oneshot: the timer cannot start it again while it runs, which is what forbids overlap."""
    service = read_unit(SERVICE)["Service"]
    assert service["Type"] == "oneshot"
    assert service["User"] not in ("", "root")
    assert Path(service["WorkingDirectory"]).is_absolute()
    executable, *arguments = service["ExecStart"].split()
    assert Path(executable).is_absolute() and executable.endswith("/.venv/bin/adacomp")
    assert arguments[:1] == ["nightly"] and len(arguments) == 2
    assert re.fullmatch(r"\d+h", service["TimeoutStartSec"])
    assert 0 < int(service["Nice"]) <= 19


def test_the_timer_starts_the_service_nightly_and_catches_up() -> None:
    """Persistent=true runs a night missed while the machine was off; Unit= names the service."""
    units = read_unit(TIMER)
    timer = units["Timer"]
    assert timer["OnCalendar"] == "*-*-* 02:30:00"
    assert timer["Persistent"] == "true"
    assert timer["Unit"] == SERVICE.name
    assert re.fullmatch(r"\d+(s|min)", timer["RandomizedDelaySec"])
    assert units["Install"]["WantedBy"] == "timers.target"


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed; the parsed checks above still ran"
)


@needs_systemd_analyze
def test_systemd_verifies_both_units(tmp_path: Path) -> None:
    """systemd's own parser. verify also insists ExecStart exists and the User resolves, which
    only holds on the target host, so the copy points those at things this machine has."""
    assert SYSTEMD_ANALYZE is not None
    service = SERVICE.read_text()
    for key, value in (
        ("ExecStart", "/bin/true"),
        ("WorkingDirectory", str(tmp_path)),
        ("User", "root"),
        ("Group", "root"),
    ):
        service, count = re.subn(rf"^{key}=.*$", f"{key}={value}", service, flags=re.MULTILINE)
        assert count == 1, key
    (tmp_path / SERVICE.name).write_text(service)
    shutil.copy(TIMER, tmp_path / TIMER.name)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify exits 0 on unknown keys and unparsable values, but names the file while warning.
    assert "adacomp-nightly" not in output, output


@needs_systemd_analyze
def test_systemd_accepts_the_timer_calendar() -> None:
    """An OnCalendar systemd cannot parse leaves the timer without a next elapse."""
    assert SYSTEMD_ANALYZE is not None
    on_calendar = read_unit(TIMER)["Timer"]["OnCalendar"]
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", on_calendar], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def manifests() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(RAYCRONJOB.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents), "one document per kind"
    return by_kind


def ray_pod_specs(job: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = job["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


def test_the_raycronjob_has_the_kuberay_shape() -> None:
    """The API server rejects unknown fields (kubectl's strict validation), so only real ones may appear."""
    cron = manifests()["RayCronJob"]
    assert cron["apiVersion"] == "ray.io/v1"
    assert cron["metadata"]["name"]
    assert {"schedule", "jobTemplate"} <= set(cron["spec"]) <= RAYCRONJOB_SPEC_FIELDS
    assert cron["spec"].get("suspend", False) is False
    job = cron["spec"]["jobTemplate"]
    assert "spec" not in job and "metadata" not in job, "jobTemplate is a RayJob spec, not wrapped"
    assert job["shutdownAfterJobFinishes"] is True
    head_containers = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert head_containers and all(c["name"] and c["image"] for c in head_containers)
    assert job["rayClusterSpec"]["workerGroupSpecs"], "a CPU worker group trains"


def test_the_raycronjob_schedule_is_a_nightly_cron_expression() -> None:
    """KubeRay parses the schedule with robfig/cron's standard five-field syntax."""
    assert runs_once_a_day(manifests()["RayCronJob"]["spec"]["schedule"])


def test_the_raycronjob_cannot_overlap_runs() -> None:
    """RayCronJob (KubeRay 1.6) has no concurrencyPolicy: a run must end before the next tick,
    and a second run that still met the first one must skip on the shared lock."""
    job = manifests()["RayCronJob"]["spec"]["jobTemplate"]
    assert 0 < job["activeDeadlineSeconds"] + job.get("ttlSecondsAfterFinished", 0) < ONE_DAY_S
    entrypoint = job["entrypoint"]
    assert re.search(r"flock -n (-E \d+ )?runs/\S+ adacomp nightly /config/\S+\.yaml$", entrypoint)


def test_the_nightly_state_lives_on_a_persistent_volume_claim() -> None:
    """Each night resumes from the last one's runs/: an emptyDir would lose it with the cluster."""
    by_kind = manifests()
    claim = by_kind["PersistentVolumeClaim"]
    assert claim["apiVersion"] == "v1"
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "workers write trial results there too"
    assert claim["spec"]["resources"]["requests"]["storage"]
    job = by_kind["RayCronJob"]["spec"]["jobTemplate"]
    workdir = re.match(r"cd (\S+) &&", job["entrypoint"])
    assert workdir
    for pod in ray_pod_specs(job):
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        runs_volume = volumes[mounts[f"{workdir.group(1)}/runs"]]
        assert runs_volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    head = ray_pod_specs(job)[0]
    config_mount = next(
        m for c in head["containers"] for m in c["volumeMounts"] if m["mountPath"] == "/config"
    )
    assert "configMap" in {v["name"]: v for v in head["volumes"]}[config_mount["name"]]
