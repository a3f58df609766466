"""Exports remembered per machine: the same model, with the same weights and code, is exported
to ONNX once.

An export costs 0.1-0.4 s (traced) to 3-4 s (dynamo) for MobileNetV2 on a 2-core
machine, and 3-5 s more for the first export of each process (its imports and tables). The same
models come back again and again: a nightly search re-runs the trials of the night before, a
resumed search the trials a kill interrupted, a calibration the models its seed draws; each
trial runs in a fresh worker process, so only a memo kept on disk sees them.

The key (`fingerprint`) names everything an export depends on: torch's and the exporter's
versions, the input's shape, and for every submodule its class, the source files of that class
and its bases, its plain attributes (a flag `forward` reads), its parameters and buffers (names,
shapes, dtypes, values). A model with hooks, which `forward` runs and no key can see, is not
remembered. A function that `forward` calls from another file is not in the key either, so a
remembered graph is used only after it answers like the model (`agrees`): ONNX Runtime and torch
on the export's own sample. A graph that disagrees is exported again and replaced. The failure
mode is a slower export, never a different one.

The folder (`<cache>/exports/`) is bounded (`ADACOMP_EXPORT_MEMO_MIB`, default 512 MiB; 0 turns the
memo off): the least recently used files go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from adacomp.environment import export_memo_limit_bytes as memo_limit_bytes
from adacomp.tasks.cache_dir import default_cache_dir, keep_file, package_version

__all__ = ["agrees", "fingerprint", "memo_limit_bytes", "recall", "remember"]

MEMO_VERSION = 3  # bump when to_onnx_proto changes its output (2: no node notes; 3: traced first)
_PLAIN = (bool, int, float, str, bytes, type(None))


def fingerprint(model: nn.Module, sample: torch.Tensor) -> str | None:
    """The memo key of exporting `model` (eval mode) on `sample`; None when it cannot be known."""
    digest = hashlib.sha256()
    digest.update(f"memo {MEMO_VERSION}|torch {torch.__version__}|{_exporter_versions()}".encode())
    digest.update(f"|sample {tuple(sample.shape[1:])} {sample.dtype}".encode())
    if _global_hooks():
        return None
    for name, module in model.named_modules(remove_duplicate=False):
        if _has_hooks(module):
            return None
        digest.update(f"|module {name} {_class_digest(type(module))}".encode())
        for attribute, value in sorted(vars(module).items()):
            if attribute in ("_parameters", "_buffers", "_modules") or "hook" in attribute:
                continue
            try:
                digest.update(f"|{attribute}={_plain(value)}".encode())
            except (RuntimeError, TypeError):
                return None
    try:
        for kind, tensors in (("p", model.named_parameters()), ("b", model.named_buffers())):
            for name, tensor in tensors:
                digest.update(f"|{kind} {name} {tuple(tensor.shape)} {tensor.dtype}".encode())
                digest.update(_tensor_bytes(tensor))
    except (RuntimeError, TypeError):  # a tensor without plain bytes (quantized, sparse): no key
        return None
    return digest.hexdigest()[:32]


def recall(key: str) -> onnx.ModelProto | None:
    """The remembered graph, or None (not there, unreadable, or the memo is off)."""
    if memo_limit_bytes() == 0:
        return None
    path = _folder() / f"{key}.onnx"
    try:
        proto = onnx.load_from_string(path.read_bytes())
        os.utime(path)  # recently used: evicted last
    except Exception:  # a missing or damaged file is only a miss
        return None
    return proto


def remember(key: str, proto: onnx.ModelProto) -> None:
    """Keep `proto` under `key`, atomically; then drop the least recently used files beyond the
    bound. A folder that cannot be written only leaves the memo empty."""
    limit = memo_limit_bytes()
    data = proto.SerializeToString()
    if limit == 0 or len(data) > limit:
        return
    folder = _folder()
    if keep_file(folder / f"{key}.onnx", data):
        _evict(folder, limit)


def agrees(proto: onnx.ModelProto, model: nn.Module, sample: torch.Tensor) -> bool:
    """Whether ONNX Runtime runs `proto` on `sample` to what `model` computes (float tolerance)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: sample.detach().cpu().numpy()}
        outputs = session.run(None, feed)
        with torch.no_grad():
            expected = model(sample)
        return _close(outputs, expected)
    except Exception:  # a graph that does not run, or outputs of another kind, do not agree
        return False


def _close(outputs: list[object], expected: object) -> bool:
    values = list(expected) if isinstance(expected, (tuple, list)) else [expected]
    tensors = [value for value in values if isinstance(value, torch.Tensor)]
    if len(tensors) != len(values) or len(tensors) != len(outputs):
        return False
    for got, tensor in zip(outputs, tensors, strict=True):
        want = tensor.detach().cpu().float().numpy()
        got_array = np.asarray(got)
        if got_array.shape != want.shape:
            return False
        scale = float(np.abs(want).max()) if want.size else 0.0
        if not np.allclose(got_array, want, rtol=1e-3, atol=1e-4 * max(1.0, scale)):
            return False
    return True


def _folder() -> Path:
    return default_cache_dir() / "exports"


def _evict(folder: Path, limit: int) -> None:
    entries = []
    for path in folder.glob("*.onnx"):
        with contextlib.suppress(OSError):
            stat = path.stat()
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda entry: entry[0]):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size


@lru_cache(maxsize=1)
def _exporter_versions() -> str:
    return ",".join(f"{name} {package_version(name)}" for name in ("onnx", "onnxscript", "onnx-ir"))


_CLASS_DIGESTS: dict[type, str] = {}


def _class_digest(cls: type) -> str:
    """The class and the bytes of the files defining it and its bases (a changed `forward`
    changes the key; files are read once per process)."""
    if cls not in _CLASS_DIGESTS:
        _CLASS_DIGESTS[cls] = _digest_of_class(cls)
    return _CLASS_DIGESTS[cls]


def _digest_of_class(cls: type) -> str:
    parts = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        parts.append(f"{klass.__module__}.{klass.__qualname__}:{_file_digest(klass)}")
    return hashlib.sha256(";".join(parts).encode()).hexdigest()[:16]


def _file_digest(cls: type) -> str:
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:  # a class with no file (built-in, made at run time)
        source = None
    if source is None:
        return f"nofile:{id(cls)}"  # never equal across processes: no memo from disk
    return _bytes_digest(source)


@lru_cache(maxsize=512)
def _bytes_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return f"unreadable:{path}"


def _plain(value: object) -> str:
    """A stable text of a plain attribute; anything else by type and identity (never equal
    across processes, so such a model is only remembered within one)."""
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, (tuple, list)) and all(isinstance(item, _PLAIN) for item in value):
        return repr(value)
    if isinstance(value, (set, frozenset)) and all(isinstance(item, str) for item in value):
        return repr(sorted(value))
    if isinstance(value, torch.Tensor):
        digest = hashlib.sha256(_tensor_bytes(value)).hexdigest()[:16]
        return f"tensor{tuple(value.shape)}{value.dtype}:{digest}"
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return f"{type(value).__module__}.{type(value).__qualname__}@{id(value)}"


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, name, None)
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        )
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as module_file

    names = ("_global_forward_hooks", "_global_forward_pre_hooks")
    return any(getattr(module_file, name, None) for name in names)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's raw bytes, whatever its dtype (bfloat16 has no numpy twin)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).numpy().tobytes()) if flat.numel() else b""
