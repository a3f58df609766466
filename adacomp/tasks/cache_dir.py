"""Where adacomp keeps what it computes once per machine (trained baselines, generated data,
data splits), and the small store of numpy arrays the data side keeps there."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from adacomp.atomic import write_atomically

__all__ = ["default_cache_dir", "keep_file", "kept_arrays", "package_version"]

Arrays = dict[str, np.ndarray]


def default_cache_dir() -> Path:
    """`$ADACOMP_CACHE`, else ~/.cache/adacomp; read per call so tests and jobs can redirect it."""
    return Path(os.environ.get("ADACOMP_CACHE", Path.home() / ".cache" / "adacomp"))


def package_version(name: str) -> str:
    """An installed distribution's version for a cache key ("unknown" where it has no metadata)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def kept_arrays(
    kind: str,
    key: str,
    names: Sequence[str],
    build: Callable[[], Arrays],
    *,
    valid: Callable[[Arrays], bool] = lambda _arrays: True,
) -> Arrays:
    """`build()`, computed once per machine: kept under `<cache>/<kind>/` by the hash of `key`,
    which must name everything the arrays depend on (versions and parameters). A missing,
    unreadable or invalid file is built again; a cache folder that cannot be written is only
    slower. Files are written atomically (temp file + rename), so concurrent processes and a
    killed one never leave a half-written entry."""
    path = default_cache_dir() / kind / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    kept = _read(path, names)
    if kept is not None and valid(kept):
        return kept
    arrays = build()
    _write(path, arrays)
    return arrays


def _read(path: Path, names: Sequence[str]) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as kept:
            return {name: np.asarray(kept[name]) for name in names}
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _write(path: Path, arrays: Arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    keep_file(path, buffer.getvalue())


def keep_file(path: Path, data: bytes) -> bool:
    """Write `data` to `path` for the cache: atomically (a temp file beside it, then a rename), so
    a concurrent reader or a killed writer never leaves half a file. False, and nothing left
    behind, where the folder cannot be written: a cache that cannot keep a file is only slower."""
    try:
        write_atomically(path, data)
    except OSError:
        return False
    return True
