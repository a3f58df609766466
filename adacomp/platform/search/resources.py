"""What a trial asks Ray for, how many trials the cluster fits at once, and the check before any.

Pure functions of the config's `resources:` section and Ray's `cluster_resources()` (a mapping
such as `{"CPU": 16.0, "GPU": 2.0, "device:pixel4": 1.0}`), so they are tested without Ray. A
request no node can meet would wait in Ray's pending queue forever; `check_cluster_fits` says so
in one line before the search trains anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from adacomp.errors import AdacompError
from adacomp.platform.search_config import Resources

# Float shares (0.1 CPU, 0.3 GPU) must not lose a trial to rounding: 1.0 / 0.1 is 9.999...
_ROUNDING = 1e-9


def trial_resources(resources: Resources) -> dict[str, float]:
    """Tune's per-trial request (`tune.with_resources`): CPUs, and GPUs only when asked for."""
    request = {"cpu": resources.cpu}
    if resources.gpu > 0:
        request["gpu"] = resources.gpu
    return request


def _fits(available: float, share: float) -> int:
    return math.floor(available / share + _ROUNDING)


def trials_that_fit(resources: Resources, cluster: Mapping[str, float], concurrency: int) -> int:
    """Trials at once: `concurrency` at most, and no more than the cluster's CPUs (and GPUs,
    when trials take some) hold side by side; at least one."""
    fits = min(concurrency, _fits(cluster.get("CPU", 1.0), resources.cpu))
    if resources.gpu > 0:
        fits = min(fits, _fits(cluster.get("GPU", 0.0), resources.gpu))
    return max(1, fits)


def check_cluster_fits(resources: Resources, cluster: Mapping[str, float]) -> None:
    """Refuses a per-trial request the whole cluster cannot meet (Ray would queue it forever)."""
    gpus = cluster.get("GPU", 0.0)
    if resources.gpu > 0 and gpus <= 0:
        raise AdacompError(
            f"resources.gpu: {resources.gpu:g} per trial, but the Ray cluster has no GPUs; "
            "set resources.gpu: 0 to fine-tune on CPUs, or add GPU nodes"
        )
    if resources.gpu > gpus:
        raise AdacompError(
            f"resources.gpu: {resources.gpu:g} per trial, but the Ray cluster has {gpus:g} GPUs in all"
        )
    cpus = cluster.get("CPU", 0.0)
    if resources.cpu > cpus:
        raise AdacompError(
            f"resources.cpu: {resources.cpu:g} per trial, but the Ray cluster has {cpus:g} CPUs "
            "for training in all"
        )
