"""Files written whole or not at all: a temporary file beside the target, renamed over it.

Every file adacomp keeps is read by another process at some point (a resumed search, a second
test worker, a device loading a bundle), and any writer can be killed mid-write. Written here
once: the rung files, the checkpointed baseline, the cache, the measurement store's parts, the
MLflow store template and the bundle manifest all go through it.

The temporary file is created with mode 0666 less the umask, as `open()` creates every other
file (`tempfile.mkstemp` makes 0600: a bundle synced as another user had readable models and an
unreadable manifest). With `durable`, the data and then the folder are synced, so the rename
survives a power cut, for what cannot be measured again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_atomically"]


def _new_temporary(target: Path) -> Path:
    for _ in range(100):
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def _sync(path: Path) -> None:
    """fsync; a folder that cannot be synced (some file systems refuse) is let be."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """A new, empty temporary path beside `target` (its folder made if missing) for a writer
    that wants a path (torch.save, safetensors, parquet); on a clean exit it replaces `target`,
    on an error it is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_temporary(target)
    try:
        yield temporary
        if durable:
            _sync(temporary)
        os.replace(temporary, target)
        if durable:
            _sync(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(target: str | os.PathLike[str], data: bytes | str, *, durable: bool = False) -> Path:
    """`data` (text as UTF-8) as the whole content of `target`; returns `target`."""
    with atomic_path(target, durable=durable) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)
