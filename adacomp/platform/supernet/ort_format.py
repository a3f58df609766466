"""A bundle's models in ONNX Runtime's own format (`.ort`), and the operator config of a reduced build.

ORT format is what ONNX Runtime's minimal and mobile builds load (they cannot parse ONNX); a full
build loads both. A reduced build is compiled with the operators, and per operator the types, its
models use: `required_operators_and_types.config`, one for the bundle, covering every
configuration (ORT's `--include_ops_by_config`, type reduction included).

The work is ONNX Runtime's own, as `python -m onnxruntime.tools.convert_onnx_models_to_ort` does it:
a session with the session option `session.save_model_format` = ORT writes the model, and that
tool's `create_config_from_models` reads the `.ort` files back into the config. The tool's
top-level function is not called: it takes the optimisation level from a process-wide environment
variable, converts every `.onnx` under a directory, prints to stdout, and cannot pass the session
config entries an artifact declares (adacomp.runtime.session).

Those entries are applied at conversion: a model with int8 weights asks ORT to fold its
DequantizeLinear nodes at load time, and an ORT format model is not optimised again at load (a
minimal build has no basic optimisers), so the `.ort` holds the folded float weights. It runs at
the float model's speed, as the `.onnx` does under `open_session`, from a larger file than the
int8 `.onnx`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adacomp.runtime.manifest import BundleFile
from adacomp.runtime.session import declared_session_config, open_session

# Basic, fixed: ORT's docs hold that basic graph optimisations are semantics-preserving, leave a
# valid graph of standard ONNX operators, and should be baked into an ORT format model at
# conversion (the reduced builds apply none at load). The extended and layout levels rewrite
# nodes into CPU-provider kernels (fused and NCHWc ones, the latter x86-only) chosen for the
# machine that converts: a bundle converted on an x86 host then fits neither an ARM phone's CPU
# nor NNAPI or CoreML, which take standard operators only. So every `.ort` runs anywhere ORT does.
OPTIMIZATION = "basic"
OPERATORS_CONFIG = "required_operators_and_types.config"
_TOOL_LOGGER = "ort_format_model.utils"


def convert_to_ort(model: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write `model` (an ONNX file) as an ORT format model at `target`, optimised at the basic
    level with the session config entries it declares; nothing else is written."""
    source, path = Path(model), Path(target)
    entries = {**declared_session_config(source), "session.save_model_format": "ORT"}
    open_session(source, optimization=OPTIMIZATION, quiet=True, config=entries, optimized_model_path=path)
    return path


def write_operators_config(
    bundle_dir: str | os.PathLike[str], models: Sequence[str], target: str = OPERATORS_CONFIG
) -> BundleFile:
    """The operator config (with types) of the ORT models `models` (relative to `bundle_dir`),
    written at `bundle_dir/target`. Its header names them as the bundle does, not by the absolute
    paths ORT's tool writes (the directory a bundle was built in is no business of the device)."""
    root = Path(bundle_dir)
    create_config_from_models = _config_writer()
    path = root / target
    create_config_from_models([root / name for name in models], path, True)
    shown = {str(root / name): name for name in models}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        listed = line[len("# - ") :].rstrip("\n")
        if line.startswith("# - ") and listed in shown:
            lines[i] = f"# - {shown[listed]}\n"
    path.write_text("".join(lines), encoding="utf-8")
    return BundleFile.of(root, target)


def add_ort_models(
    bundle_dir: str | os.PathLike[str], onnx_files: Sequence[str]
) -> tuple[list[BundleFile], BundleFile]:
    """Convert each `x.onnx` of the bundle (relative, /-separated) to `x.ort` beside it and write
    the bundle's operator config; returns the ORT models' entries, in order, and the config's."""
    models = []
    for name in onnx_files:
        ort_name = Path(name).with_suffix(".ort").as_posix()
        convert_to_ort(Path(bundle_dir) / name, Path(bundle_dir) / ort_name)
        models.append(BundleFile.of(bundle_dir, ort_name))
    return models, write_operators_config(bundle_dir, [m.file for m in models])


def _config_writer() -> Callable[..., Any]:
    """ORT's `create_config_from_models`. Importing its package calls `logging.basicConfig`
    (onnxruntime/tools/logger.py) and logs at INFO: the handler it adds to the root logger is
    taken off again and the tool's own logger keeps to warnings."""
    root = logging.getLogger()
    before = list(root.handlers)
    from onnxruntime.tools.ort_format_model import create_config_from_models

    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
    logging.getLogger(_TOOL_LOGGER).setLevel(logging.WARNING)
    writer: Callable[..., Any] = create_config_from_models
    return writer
