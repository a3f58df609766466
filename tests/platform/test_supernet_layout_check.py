"""Weights trained for one elastic layout are never read as another's (issue 37, residual widths).

A supernet trained with residual streams elastic put its channels in importance order per
other groups than one without; its tensors still load into today's supernet (an elastic layer holds the full
tensor), so only the `layout.json` written beside them can tell, and it is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.platform.supernet_training.training import check_layout
from adacomp.search_spaces.supernet import Supernet, SupernetOptions


def _written(directory: Path, supernet: Supernet) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "layout.json").write_text(json.dumps(supernet.describe()))
    return directory


def test_weights_of_another_layout_are_refused_in_one_line(
    residual_net: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    before = Supernet.build(residual_net, cnn_input)
    now = Supernet.build(residual_net, cnn_input, SupernetOptions(residual_width=True))
    directory = _written(tmp_path / "old", before)
    with pytest.raises(
        AdacompError, match=r"other elastic widths.*supernet.residual_width as it was trained"
    ):
        check_layout(directory, now)
    check_layout(directory, before)  # the same layout: accepted
    check_layout(_written(tmp_path / "new", now), now)
    check_layout(tmp_path / "none", now)  # nothing written beside the weights: nothing to check


def test_a_layout_file_that_is_not_one_is_named(
    residual_net: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    (tmp_path / "layout.json").write_text("[1, 2")
    with pytest.raises(AdacompError, match=r"layout.json: expected the JSON `adacomp supernet train` writes"):
        check_layout(tmp_path, Supernet.build(residual_net, cnn_input))
