"""What the data side computes once per machine and keeps in the cache folder: the digits read
without scikit-learn, the splits scikit-learn draws, and the store that keeps them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from adacomp.tasks.cache_dir import default_cache_dir, kept_arrays
from adacomp.tasks.datasets import _draw_split, stratified_split
from adacomp.tasks.digits import _digits_table


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache of this test's own (the suite's shared one may already hold these files)."""
    monkeypatch.setenv("ADACOMP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_digits_are_read_exactly_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits

    pixels, labels = _digits_table()
    bunch = load_digits()
    assert pixels.shape == (1797, 64) and np.array_equal(pixels, bunch.data)
    assert labels.dtype == np.int64 and np.array_equal(labels, bunch.target)


def test_kept_arrays_are_built_once_and_rebuilt_when_missing_broken_or_invalid(cache: Path) -> None:
    calls: list[int] = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"a": np.arange(len(calls) + 2), "b": np.ones((2, 2))}

    first = kept_arrays("things", "key 1", ("a", "b"), build)
    again = kept_arrays("things", "key 1", ("a", "b"), build)
    assert len(calls) == 1 and all(np.array_equal(first[k], again[k]) for k in ("a", "b"))
    (path,) = (cache / "things").iterdir()
    assert default_cache_dir() == cache and not list((cache / "things").glob("*.tmp"))
    kept_arrays("things", "key 2", ("a", "b"), build)  # another key, another file
    assert len(calls) == 2 and len(list((cache / "things").iterdir())) == 2
    path.write_bytes(b"not an npz")  # a broken file is built again and replaced
    assert np.array_equal(kept_arrays("things", "key 1", ("a", "b"), build)["a"], np.arange(5))
    assert len(calls) == 3
    kept_arrays("things", "key 1", ("a", "c"), build)  # an array missing from the file
    assert len(calls) == 4
    rejected = kept_arrays("things", "key 1", ("a",), build, valid=lambda arrays: len(arrays["a"]) > 99)
    assert len(calls) == 5 and len(rejected["a"]) == 7


def test_a_cache_folder_that_cannot_be_written_only_costs_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("ADACOMP_CACHE", str(blocked))
    arrays = kept_arrays("things", "key", ("a",), lambda: {"a": np.arange(3)})
    assert np.array_equal(arrays["a"], np.arange(3)) and blocked.read_text().startswith("a file")


def test_a_split_is_drawn_by_scikit_learn_once_then_read_back(cache: Path) -> None:
    labels = np.repeat(np.arange(4), 25)
    split = stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    drawn = _draw_split(labels, (0.6, 0.2, 0.2), 3)
    assert all(np.array_equal(a, b) for a, b in zip(split, drawn, strict=True))
    assert [len(part) for part in split] == [60, 20, 20]
    (path,) = (cache / "splits").iterdir()
    stamp = path.stat().st_mtime_ns
    again = stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    assert path.stat().st_mtime_ns == stamp and all(
        np.array_equal(a, b) for a, b in zip(split, again, strict=True)
    )
    other_seed = stratified_split(labels, (0.6, 0.2, 0.2), seed=4)
    assert len(list((cache / "splits").iterdir())) == 2 and not np.array_equal(other_seed[0], split[0])
    np.savez(path, part0=np.arange(5), part1=np.arange(5), part2=np.arange(5))  # not a partition
    os.utime(path, ns=(stamp, stamp))
    redrawn = stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(split, redrawn, strict=True))
    with pytest.raises(ValueError, match="expected positive numbers summing to 1"):
        stratified_split(labels, (0.6, 0.6), seed=3)
