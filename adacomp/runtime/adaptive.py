"""A model that changes its configuration with the context: selector + cached ONNX Runtime sessions.

Switching is not free: a configuration not in the cache is loaded from its file into a new
InferenceSession (graph optimisation included). Every switch is recorded with its time and
whether the cache served it, which is how the cost of adaptation on a device is measured.

A bundle of schema v2 holds every configuration twice: as ONNX (the default, what the search
measured) and in ONNX Runtime's own format (`model_format="ort"`, what ORT's minimal and mobile
builds load: optimised at conversion, so it loads without ORT's optimisers). Either way, the
files of the chosen format are checked against the manifest's sizes and hashes before serving;
the other format's files may be left off the device.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from adacomp.runtime.manifest import (
    MODEL_FORMATS,
    Manifest,
    ManifestError,
    ModelFormat,
    configuration_path,
    load_manifest,
    verify_files,
)
from adacomp.runtime.selector import Context, Selection, Selector
from adacomp.runtime.session import open_session


@dataclass(frozen=True)
class SwitchEvent:
    from_id: str | None  # None for the first configuration loaded
    to_id: str
    seconds: float  # session creation, or the cache lookup when cached
    cached: bool


class AdaptiveModel:
    """The bundle's configurations behind one `run()`, switched by `adapt(context)`.

    At most `cache_size` sessions stay loaded (least recently used goes first); `threads` is
    ONNX Runtime's intra-op thread count per session; `model_format` is the files sessions load
    ("onnx", or "ort" where the bundle has them; see the module docstring).
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike[str],
        device: str | None = None,
        selector: Selector | None = None,
        cache_size: int = 4,
        *,
        threads: int = 1,
        verify: bool = True,  # check every model file's size and sha256 before serving
        model_format: ModelFormat = "onnx",
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size: expected at least 1, got {cache_size}")
        if threads < 1:
            raise ValueError(f"threads: expected at least 1, got {threads}")
        if model_format not in MODEL_FORMATS:
            raise ValueError(
                f"model_format: expected one of {', '.join(MODEL_FORMATS)}, got {model_format!r}"
            )
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = load_manifest(self.bundle_dir)
        if model_format not in self.manifest.formats:
            raise ManifestError(
                f"{self.bundle_dir}: no {model_format} models in this bundle (it has "
                f"{', '.join(self.manifest.formats)}; export it again with a newer adacomp)"
            )
        self.model_format: ModelFormat = model_format
        if verify:
            verify_files(self.bundle_dir, self.manifest, model_formats=(model_format,))
        if selector is None:
            selector = Selector(self.manifest, device if device is not None else self.manifest.devices[0])
        elif device is not None and selector.device != device:
            raise ValueError(f"the selector is for device {selector.device!r}, not {device!r}")
        if selector.ids != self.manifest.ids:
            raise ValueError(f"the selector was built for another manifest than {self.bundle_dir}")
        self.selector = selector
        self.cache_size = cache_size
        self._threads = threads
        self._sessions: OrderedDict[str, Any] = OrderedDict()
        self._current: str | None = None
        self._switches: list[SwitchEvent] = []

    @property
    def device(self) -> str:
        return self.selector.device

    @property
    def current_id(self) -> str | None:
        return self._current

    @property
    def switches(self) -> tuple[SwitchEvent, ...]:
        return tuple(self._switches)

    @property
    def loaded(self) -> tuple[str, ...]:
        """Configurations with a live session, least recently used first."""
        return tuple(self._sessions)

    def adapt(self, context: Context) -> Selection:
        """Select for `context` and make the selection current (loading it if needed)."""
        selection = self.selector.select(context)
        if selection.id != self._current:
            self._activate(selection.id)
        return selection

    def switch_to(self, config_id: str) -> SwitchEvent | None:
        """Run `config_id` from now on, whatever the selector would pick; None if already current."""
        self.selector.set_current(config_id)
        if config_id == self._current:
            return None
        return self._activate(config_id)

    def run(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        """The current configuration's first output for input `x` (cast to the manifest's dtype)."""
        if self._current is None:
            raise RuntimeError("no configuration is active yet: call adapt() or switch_to() first")
        spec = self.manifest.input
        array = np.asarray(x, dtype=spec.dtype)
        expected = spec.shape
        if array.ndim != len(expected) or any(
            e is not None and e != n for e, n in zip(expected, array.shape, strict=True)
        ):
            shown = "x".join("N" if d is None else str(d) for d in expected)
            raise ValueError(f"input shape {array.shape} does not match the bundle's {shown}")
        session = self._sessions[self._current]
        self._sessions.move_to_end(self._current)
        outputs = session.run([self.manifest.output.name], {spec.name: array})
        result: npt.NDArray[Any] = outputs[0]
        return result

    def _activate(self, config_id: str) -> SwitchEvent:
        start = time.perf_counter()
        cached = config_id in self._sessions
        if cached:
            self._sessions.move_to_end(config_id)
        else:
            config = self.manifest.configuration(config_id)
            path = configuration_path(self.bundle_dir, config, self.model_format)
            # quiet: errors only, no per-load warnings on the device
            session = open_session(path, threads=self._threads, quiet=True)
            self._sessions[config_id] = session
            while len(self._sessions) > self.cache_size:
                self._sessions.popitem(last=False)
        event = SwitchEvent(self._current, config_id, time.perf_counter() - start, cached)
        self._switches.append(event)
        self._current = config_id
        return event
