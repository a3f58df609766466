"""The export memo: the same model, weights and code are exported once per machine, anything that
changes the graph is another key, and a remembered graph is used only when it answers like the
model. Real exports, real ONNX Runtime; each test has an empty cache of its own."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from adacomp.errors import AdacompError
from adacomp.search_spaces import export, export_memo
from adacomp.search_spaces.export import to_onnx_proto
from tests.helpers.small_models import SmallCNN, randomise_bn


class Scaled(nn.Module):
    """`forward` reads a plain attribute: the key must see it."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * self.scale
        return out


class Shifted(Scaled):
    """Same parameters and attributes as Scaled, another forward: the class is in the key."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x) * self.scale + 1.0
        return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ADACOMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ADACOMP_EXPORT_MEMO_MIB", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """Every real export torch runs (the memo's misses), in order."""
    calls: list[nn.Module] = []
    real: Callable[[nn.Module, torch.Tensor], onnx.ModelProto] = export._exported

    def counted(model: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
        calls.append(model)
        return real(model, example)

    monkeypatch.setattr(export, "_exported", counted)
    return calls


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_bn(SmallCNN()).eval()


def _sample(shape: tuple[int, ...] = (1, 1, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1))


def test_the_same_model_is_exported_once_and_read_back(cache: Path, exports: list[nn.Module]) -> None:
    model = _cnn()
    first = to_onnx_proto(model, _sample())
    again = to_onnx_proto(copy.deepcopy(model), _sample())  # another object, the same model
    assert len(exports) == 1
    assert first.SerializeToString() == again.SerializeToString()
    assert len(list((cache / "exports").glob("*.onnx"))) == 1
    assert not list((cache / "exports").glob("*.tmp"))


def test_weights_attributes_classes_and_input_shapes_are_in_the_key() -> None:
    sample = torch.randn(2, 4)
    key = export_memo.fingerprint(Scaled(2.0).eval(), sample)
    torch.manual_seed(0)
    model = Scaled(2.0).eval()
    torch.manual_seed(0)
    twin = Scaled(2.0).eval()
    assert export_memo.fingerprint(model, sample) == export_memo.fingerprint(twin, sample) != key
    with torch.no_grad():
        twin.linear.weight[0, 0] += 1e-6
    assert export_memo.fingerprint(twin, sample) != export_memo.fingerprint(model, sample)
    torch.manual_seed(0)
    scaled_by_three = Scaled(3.0).eval()
    torch.manual_seed(0)
    shifted = Shifted(2.0).eval()
    assert len({export_memo.fingerprint(m, sample) for m in (model, scaled_by_three, shifted)}) == 3
    assert export_memo.fingerprint(model, torch.randn(2, 5)) != export_memo.fingerprint(model, sample)
    assert export_memo.fingerprint(model.train(), sample) != export_memo.fingerprint(model.eval(), sample)


def test_a_remembered_graph_that_does_not_answer_like_the_model_is_exported_again(
    cache: Path, exports: list[nn.Module]
) -> None:
    """A key can miss what `forward` calls from another file: the graph is checked on use."""
    torch.manual_seed(0)
    model = Scaled(2.0).eval()
    torch.manual_seed(0)
    other = Shifted(2.0).eval()
    sample = torch.randn(1, 4)
    wrong = to_onnx_proto(other, sample)
    example = torch.cat([sample, sample])
    key = export_memo.fingerprint(model, example)
    assert key is not None
    export_memo.remember(key, wrong)  # planted under the model's key
    assert not export_memo.agrees(wrong, model, example) and export_memo.agrees(wrong, other, example)
    right = to_onnx_proto(model, sample)
    assert len(exports) == 2 and export_memo.agrees(right, model, example)
    replaced = export_memo.recall(key)
    assert replaced is not None and replaced.SerializeToString() == right.SerializeToString()
    (cache / "exports" / f"{key}.onnx").write_bytes(b"damaged")  # an unreadable file is a miss
    assert export_memo.recall(key) is None
    to_onnx_proto(model, sample)
    assert len(exports) == 3


def test_a_model_with_hooks_is_never_remembered(cache: Path, exports: list[nn.Module]) -> None:
    model = _cnn()
    model.fc2.register_forward_hook(lambda _module, _inputs, output: output * 2)
    assert export_memo.fingerprint(model, _sample((2, 1, 8, 8))) is None
    to_onnx_proto(model, _sample())
    to_onnx_proto(model, _sample())
    assert len(exports) == 2 and not (cache / "exports").exists()


def test_the_memo_is_bounded_least_recently_used_first_and_can_be_turned_off(
    cache: Path, exports: list[nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    to_onnx_proto(_cnn(0), _sample())
    (only,) = (cache / "exports").glob("*.onnx")
    room_for_one = only.stat().st_size * 1.5 / (1024 * 1024)
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", f"{room_for_one:.6f}")
    to_onnx_proto(_cnn(1), _sample())
    (kept,) = (cache / "exports").glob("*.onnx")
    assert kept != only  # the newer stays, the older went
    to_onnx_proto(_cnn(1), _sample())
    assert len(exports) == 2
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", "0")
    to_onnx_proto(_cnn(1), _sample())
    assert len(exports) == 3 and export_memo.recall(kept.stem) is None


def test_a_cache_folder_that_cannot_be_written_still_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exports: list[nn.Module]
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("ADACOMP_CACHE", str(blocked))
    first = to_onnx_proto(_cnn(), _sample())
    second = to_onnx_proto(_cnn(), _sample())
    assert len(exports) == 2 and first.SerializeToString() == second.SerializeToString()


class TwoHeads(nn.Module):
    """Two outputs: each is compared."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(x)
        return out, out.relu()


class Keyed(TwoHeads):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"out": self.linear(x)}


def test_every_output_must_agree_and_outputs_of_another_kind_never_do(cache: Path) -> None:
    torch.manual_seed(0)
    model = TwoHeads().eval()
    example = torch.randn(2, 4)
    graph = to_onnx_proto(model, example)
    assert len(graph.graph.output) == 2 and export_memo.agrees(graph, model, example)
    with torch.no_grad():
        model.linear.bias[0] += 1.0  # the weights moved after the export
    assert not export_memo.agrees(graph, model, example)
    torch.manual_seed(0)
    assert not export_memo.agrees(graph, Keyed().eval(), example)  # a dict, not two tensors
    assert not export_memo.agrees(onnx.ModelProto(), model, example)  # not a graph at all


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_a_bound_that_is_not_a_size_is_refused_in_one_line(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADACOMP_EXPORT_MEMO_MIB", value)
    with pytest.raises(
        AdacompError, match=r"ADACOMP_EXPORT_MEMO_MIB=.*expected a number of MiB >= 0"
    ) as error:
        to_onnx_proto(_cnn(), _sample())
    assert len(str(error.value).splitlines()) == 1
