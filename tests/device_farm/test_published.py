"""Every built-in phone and board profile agrees, within 25 %, with latencies published for its device.

Each profile records its checks (source, network, precision, runtime, threads, the published
figure and what the profile predicted when the entry was written); this test re-predicts each
one over the same graph (MobileNetV1/V2 at 224x224 exported here, ORT's optimised kernels), so
a later change to a profile or to the emulator that moves a prediction away from the device,
or away from what the file claims, fails here."""

from __future__ import annotations

import pytest

from adacomp.device_farm.emulator import predict_model
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.profiles import builtin_profile_names, load_profile
from adacomp.platform.ops.reference_models import reference_onnx

TOLERANCE = 0.25
CHECKED = [
    (name, i)
    for name in builtin_profile_names()
    if name != "host"
    for i in range(len(load_profile(name).published))
]


def test_every_device_profile_has_a_published_check() -> None:
    """The generic host profile is the exception: it is a starting point for `farm calibrate`."""
    assert {name for name, _ in CHECKED} == set(builtin_profile_names()) - {"host"}


@pytest.mark.slow
@pytest.mark.parametrize(("profile_name", "index"), CHECKED)
def test_profile_predicts_the_published_latency(profile_name: str, index: int) -> None:
    profile = load_profile(profile_name)
    check = profile.published[index]
    model = OnnxModel(reference_onnx(check.model, check.precision), f"{check.model}.onnx")
    predicted = predict_model(model, profile, threads=check.threads).latency_ms
    assert predicted == pytest.approx(check.predicted_ms, rel=0.03), "the file's recorded prediction is stale"
    assert abs(predicted / check.published_ms - 1) <= TOLERANCE, (
        f"{profile_name}: {check.model} {check.precision} on {check.threads} thread(s) predicted "
        f"{predicted:.1f} ms, published {check.published_ms} ms ({check.source})"
    )
