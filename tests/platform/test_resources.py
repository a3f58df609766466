"""The `resources:` section: validation, what a trial asks Ray for, how many fit, the early refusal.

Pure, but for one search through the CLI on a real local Ray: a search that asks for GPUs on a
cluster without any is refused before Ray is asked to place a trial (the test at the end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adacomp.errors import AdacompError
from adacomp.platform.cli.main import main
from adacomp.platform.evaluate.farm_targets import farm_for_targets
from adacomp.platform.search import job, preflight, ray_lifecycle
from adacomp.platform.search.resources import check_cluster_fits, trial_resources, trials_that_fit
from adacomp.platform.search.trial_worker import worker_accelerator
from adacomp.platform.search_config import SEARCH_MEASURE, Resources, SearchConfig, load_search_config
from adacomp.tasks.accelerator import CPU

GOOD = """
name: s
task: digits
targets: [pixel4, host]
objectives:
  - {metric: accuracy}
  - {metric: latency, target: pixel4}
trials: 4
"""


def _load(tmp_path: Path, resources: str) -> SearchConfig:
    path = tmp_path / "search.yaml"
    path.write_text(GOOD + resources)
    return load_search_config(path)


def test_the_defaults_are_one_cpu_no_gpu() -> None:
    resources = Resources()
    assert (resources.cpu, resources.gpu, resources.mixed_precision) == (1.0, 0.0, "auto")
    assert (resources.loader_workers, resources.pin_memory) == (0, True)
    assert trial_resources(resources) == {"cpu": 1.0}  # what every trial asked for before


@pytest.mark.parametrize(
    ("text", "cpu", "gpu"),
    [
        ("resources: {gpu: 0.25}", 1.0, 0.25),
        ("resources: {gpu: 0.5, cpu: 2}", 2.0, 0.5),
        ("resources: {gpu: 1}", 1.0, 1.0),
        ("resources: {gpu: 4, cpu: 8, mixed_precision: off, loader_workers: 4, pin_memory: false}", 8.0, 4.0),
        ("resources: {cpu: 0.5}", 0.5, 0.0),
    ],
)
def test_fractional_and_whole_gpus_are_accepted(tmp_path: Path, text: str, cpu: float, gpu: float) -> None:
    config = _load(tmp_path, text)
    assert (config.resources.cpu, config.resources.gpu) == (cpu, gpu)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "resources: {gpu: 1.5}",
            r"resources\.gpu: .*1\.5 GPUs per trial; above 1, Ray takes whole GPUs only",
        ),
        ("resources: {gpu: -1}", r"resources\.gpu: Input should be greater than or equal to 0"),
        ("resources: {gpu: 65}", r"resources\.gpu: Input should be less than or equal to 64"),
        ("resources: {cpu: 0}", r"resources\.cpu: Input should be greater than 0"),
        ("resources: {gpu: .nan}", r"not a finite number"),
        ("resources: {gpu: true}", r"resources: .*gpu: expected a number, got true"),
        ("resources: {gpus: 1}", r"resources\.gpus: Extra inputs are not permitted"),
        (
            "resources: {mixed_precision: fp8}",
            r"resources\.mixed_precision: Input should be 'auto', 'on' or 'off'",
        ),
        ("resources: {mixed_precision: 'on'}", r"resources: .*mixed_precision 'on' needs gpu > 0"),
        ("resources: {mixed_precision: on}", r"resources: .*mixed_precision 'on' needs gpu > 0"),
        ("resources: {loader_workers: 65}", r"resources\.loader_workers: Input should be less than or equal"),
    ],
)
def test_bad_resources_are_one_line_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AdacompError, match=message) as caught:
        _load(tmp_path, text)
    assert "\n" not in str(caught.value)


def test_a_bare_yaml_on_or_off_means_the_word(tmp_path: Path) -> None:
    assert _load(tmp_path, "resources: {mixed_precision: off}").resources.mixed_precision == "off"
    assert _load(tmp_path, "resources: {gpu: 1, mixed_precision: on}").resources.mixed_precision == "on"


def test_the_request_comes_from_the_config() -> None:
    assert trial_resources(Resources(cpu=2, gpu=0.5)) == {"cpu": 2.0, "gpu": 0.5}
    assert trial_resources(Resources(cpu=0.5)) == {"cpu": 0.5}  # no `gpu` key: CPU trials as before


@pytest.mark.parametrize(
    ("resources", "cluster", "concurrency", "expected"),
    [
        (Resources(), {"CPU": 4.0}, 8, 4),  # as before: one core per trial
        (Resources(), {"CPU": 16.0}, 2, 2),
        (Resources(), {}, 3, 1),  # nothing said: one at a time
        (Resources(cpu=2), {"CPU": 7.0}, 8, 3),
        (Resources(cpu=0.1), {"CPU": 1.0}, 100, 10),  # 1.0 / 0.1 is 9.999...: no trial lost
        (Resources(gpu=0.5, cpu=2), {"CPU": 16.0, "GPU": 1.0}, 8, 2),  # the GPUs bound it
        (Resources(gpu=0.25), {"CPU": 2.0, "GPU": 4.0}, 8, 2),  # the CPUs bound it
        (Resources(gpu=0.3), {"CPU": 64.0, "GPU": 0.9}, 8, 3),
        (Resources(gpu=2), {"CPU": 64.0, "GPU": 3.0}, 8, 1),
    ],
)
def test_concurrency_is_the_number_of_trials_that_fit(
    resources: Resources, cluster: dict[str, float], concurrency: int, expected: int
) -> None:
    assert trials_that_fit(resources, cluster, concurrency) == expected


@pytest.mark.parametrize(
    ("resources", "cluster", "message"),
    [
        (
            Resources(gpu=0.5),
            {"CPU": 8.0, "device:pixel4": 1.0},
            r"^resources\.gpu: 0\.5 per trial, but the Ray cluster has no GPUs; set resources\.gpu: 0",
        ),
        (
            Resources(gpu=2),
            {"CPU": 8.0, "GPU": 1.0},
            r"^resources\.gpu: 2 per trial, but the Ray cluster has 1 GPUs",
        ),
        (Resources(cpu=4), {"CPU": 2.0}, r"^resources\.cpu: 4 per trial, but the Ray cluster has 2 CPUs"),
    ],
)
def test_a_request_no_node_can_meet_is_refused(
    resources: Resources, cluster: dict[str, float], message: str
) -> None:
    with pytest.raises(AdacompError, match=message) as caught:
        check_cluster_fits(resources, cluster)
    assert "\n" not in str(caught.value)


def test_requests_the_cluster_meets_pass() -> None:
    check_cluster_fits(Resources(), {"CPU": 1.0})
    check_cluster_fits(Resources(gpu=0.25, cpu=2), {"CPU": 2.0, "GPU": 1.0})


def test_gpu_trials_leave_the_host_measurements_as_they_were(tmp_path: Path) -> None:
    """Host measurements run in the host device's actor, pinned to the cores init_local_ray
    reserves from the farm alone (not from `resources`): a GPU trial changes neither those nor
    how it measures, and asks Ray for no device resource (it never takes the device's slot)."""
    cpu = _load(tmp_path, "")
    gpu = _load(tmp_path, "resources: {gpu: 0.5, cpu: 2}")
    assert gpu.measure == cpu.measure == SEARCH_MEASURE
    assert farm_for_targets(gpu) == farm_for_targets(cpu)
    assert preflight.identity(gpu) == preflight.identity(cpu)  # where a trial trains is not what it measures
    assert set(trial_resources(gpu.resources)) == {"cpu", "gpu"}
    assert ray_lifecycle.init_ray.__code__.co_varnames[:2] == ("address", "farm")  # the reservation's inputs


def test_a_worker_without_cuda_trains_on_the_cpu(tmp_path: Path) -> None:
    """Outside Ray and without CUDA (this machine, or any CPU node) a GPU config still runs."""
    assert worker_accelerator(_load(tmp_path, "resources: {gpu: 0.5}")) == CPU
    assert worker_accelerator(_load(tmp_path, "")) == CPU


@pytest.mark.slow  # a search that starts and stops its own Ray: end to end, not the inner loop
@pytest.mark.usefixtures("cold_ray")
def test_search_refuses_gpus_the_cluster_lacks_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI, on the real local Ray the search starts (its GPUs hidden, so that this
    holds on a GPU machine too): one line, exit code 2, no trial run, Ray stopped again.
    Starts cold: the Ray the search starts and stops is the point."""
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what Ray reads to count a node's GPUs

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the search ran")

    monkeypatch.setattr(job, "_run", never)
    path = tmp_path / "search.yaml"
    path.write_text(GOOD + "resources: {gpu: 0.5, cpu: 2}\n")
    assert main(["search", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        "resources.gpu: 0.5 per trial, but the Ray cluster has no GPUs; "
        "set resources.gpu: 0 to fine-tune on CPUs, or add GPU nodes"
    )
    assert not (tmp_path / "runs" / "s" / "search.json").exists()
    assert not ray.is_initialized()
