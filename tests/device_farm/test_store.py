from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from adacomp.device_farm import LatencyStats, Measurement, MeasurementStore
from tests.helpers.tiny_onnx import tiny_model


def _m(hash_: str = "abc", device: str = "d", median: float = 1.0, ts: float = 1.0) -> Measurement:
    return Measurement(
        device=device,
        device_class="c",
        runtime="rt",
        source="measured",
        latency=LatencyStats.from_samples([median, median * 1.1, median * 0.9]),
        energy_mj=None,
        peak_memory_mb=2.0,
        storage_bytes=10,
        model_hash=hash_,
        settings={"batch_size": 1, "intra_op_threads": 1},
        timestamp=ts,
    )


def test_round_trip_and_lookup(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path)
    store.add(_m(median=2.0, ts=1.0))
    store.add(_m(median=3.0, ts=2.0))
    found = store.lookup("abc", "d", {"intra_op_threads": 1, "batch_size": 1})
    assert found is not None and found.latency.median_ms == 3.0  # the newest wins
    assert store.lookup("abc", "d", {"batch_size": 8, "intra_op_threads": 1}) is None
    reopened = MeasurementStore(tmp_path)
    assert reopened.lookup("abc", "d", {"batch_size": 1, "intra_op_threads": 1}) == found


def test_failures_are_kept_but_never_served(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path)
    store.add_failure("d", "c", "abc", {"batch_size": 1}, "boom")
    rows = MeasurementStore(tmp_path).rows()
    assert rows[0]["status"] == "failed" and rows[0]["error"] == "boom"
    assert store.lookup("abc", "d", {"batch_size": 1}) is None


def test_appends_never_rewrite_and_compaction_keeps_every_row(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path)
    for i in range(5):
        store.add(_m(hash_=f"h{i}", ts=float(i)))
    assert len(store.parts()) == 5
    first = store.parts()[0].read_bytes()
    store.add(_m(hash_="later"))
    assert store.parts()[0].read_bytes() == first
    store.compact()
    assert len(store.parts()) == 1
    assert sorted(r["model_hash"] for r in store.rows()) == ["h0", "h1", "h2", "h3", "h4", "later"]


def test_a_leftover_temporary_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".part-1-dead.parquet.tmp").write_bytes(b"half written")
    store = MeasurementStore(tmp_path)
    store.add(_m())
    assert len(store.rows()) == 1


def test_a_corrupt_part_is_quarantined_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 18: one truncated or zero-byte part made every lookup fail with an ArrowInvalid
    traceback (even for models not in the store) and aborted compact(). Now it is moved aside
    with one warning, nothing is deleted, and the other rows are served."""
    store = MeasurementStore(tmp_path)
    store.add(_m(hash_="kept"))
    store.add(_m(hash_="also-kept"))
    good = store.parts()[0]
    truncated = tmp_path / "part-9000000000000000000-trunc.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "part-9000000000000000001-empty.parquet"
    empty.write_bytes(b"")
    truncated_bytes = truncated.read_bytes()

    with caplog.at_level(logging.WARNING, logger="adacomp.device_farm.store"):
        reopened = MeasurementStore(tmp_path)
    assert reopened.lookup("kept", "d", {"batch_size": 1, "intra_op_threads": 1}) is not None
    assert sorted(r["model_hash"] for r in reopened.rows()) == ["also-kept", "kept"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("\n" not in w and "quarantine" in w for w in warnings)
    quarantined = tmp_path / "quarantine"
    assert (quarantined / truncated.name).read_bytes() == truncated_bytes  # moved, never deleted
    assert (quarantined / empty.name).exists()

    reopened.add(_m(hash_="new"))
    merged = reopened.compact()
    assert merged is not None and reopened.parts() == [merged]
    assert sorted(r["model_hash"] for r in reopened.rows()) == ["also-kept", "kept", "new"]


def test_compaction_quarantines_a_part_that_went_bad_meanwhile(tmp_path: Path) -> None:
    store = MeasurementStore(tmp_path)
    for i in range(3):
        store.add(_m(hash_=f"h{i}"))
    store.parts()[1].write_bytes(b"PAR1 not really")
    merged = store.compact()
    assert merged is not None and len(store.parts()) == 1
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    assert sorted(r["model_hash"] for r in store.rows()) == ["h0", "h2"]


def test_farm_measure_works_beside_a_corrupt_part(tmp_path: Path) -> None:
    """The issue's reproduction through the CLI: `farm measure` with a store holding a bad part."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "part-1-zero.parquet").write_bytes(b"")
    farm = tmp_path / "farm.yaml"
    farm.write_text(
        "devices: [{name: phone, kind: emulated, class: pixel4, profile: pixel4}]\nstore: store\n"
    )
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_model().data)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adacomp",
            "farm",
            "measure",
            str(model),
            "--device",
            "phone",
            "--config",
            str(farm),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "quarantine" in result.stderr
    assert (store / "quarantine" / "part-1-zero.parquet").exists()
