from __future__ import annotations

from pathlib import Path

from adacomp.device_farm import LatencyStats, Measurement, MeasurementStore


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
