"""adacomp.atomic: a file is written whole or not at all, with the mode `open()` gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adacomp.atomic import atomic_path, write_atomically


def test_a_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.json"
    assert write_atomically(target, "first") == target
    write_atomically(target, b"second", durable=True)
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.pt"
    target.write_text("old")

    def killed_mid_write() -> None:
        with atomic_path(target) as temporary:
            temporary.write_text("half a fi")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        killed_mid_write()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pt"]


def test_the_file_gets_the_mode_open_gives_not_mkstemps_0600(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    written = write_atomically(tmp_path / "atomic", "x")
    assert os.stat(written).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
