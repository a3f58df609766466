from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from adacomp.tasks import TaskError, TrainBudget, load_task, load_weights, pretrained_model
from adacomp.tasks import pretrained as pretrained_module


def _tiny_digits(steps: int = 30):  # type: ignore[no-untyped-def]
    return replace(load_task("digits"), train_budget=TrainBudget(steps=steps))


def _no_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("train() was called although the cache holds the weights")


def test_pretrained_is_cached_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = _tiny_digits()
    first = pretrained_model(task, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("digits-seed0-") and files[0].suffix == ".safetensors"
    assert not first.training
    monkeypatch.setattr(pretrained_module, "train", _no_training)  # a load, not a training: no timing
    second = pretrained_model(task, cache_dir=tmp_path)
    assert not second.training
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_seed_and_budget_change_the_cache_key(tmp_path: Path) -> None:
    task = _tiny_digits(steps=5)
    first = pretrained_model(task, cache_dir=tmp_path)
    other_seed = pretrained_model(task, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other_seed.state_dict()["fc2.weight"], first.state_dict()["fc2.weight"])
    pretrained_model(_tiny_digits(steps=6), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary files


def test_cache_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADACOMP_CACHE", str(tmp_path / "cache"))
    task = load_task("tests.tasks.custom_task_fixture:make_task")  # name 'custom digits/v1'
    pretrained_model(task)
    (path,) = (tmp_path / "cache").iterdir()
    assert path.name.startswith("custom_digits_v1-seed0-")


def test_an_unreadable_cache_entry_is_retrained(tmp_path: Path) -> None:
    task = _tiny_digits(steps=5)
    first = pretrained_model(task, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="ignoring unusable cached weights"):
        again = pretrained_model(task, cache_dir=tmp_path)
    assert torch.equal(again.state_dict()["fc1.weight"], first.state_dict()["fc1.weight"])
    load_weights(task.build_model(), path)  # rewritten with good weights


def test_load_weights_errors_name_the_file(tmp_path: Path) -> None:
    model = load_task("digits").build_model()
    with pytest.raises(TaskError, match=r"none\.safetensors' does not exist"):
        load_weights(model, tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(TaskError, match=r"junk\.safetensors' is not a readable safetensors file"):
        load_weights(model, str(tmp_path / "junk.safetensors"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc2.weight"] = torch.zeros(3, 3)
    state["extra"] = torch.zeros(1)
    del state["fc1.bias"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(
        TaskError,
        match=r"bad.safetensors' does not fit the model: missing fc1.bias; unexpected extra; "
        r"shape of fc2.weight: file \(3, 3\), model \(10, 128\)",
    ):
        load_weights(model, tmp_path / "bad.safetensors")
    many = {k: v for k, v in model.state_dict().items() if not k.startswith("features")}
    save_file({k: v.clone() for k, v in many.items()}, str(tmp_path / "few.safetensors"))
    with pytest.raises(
        TaskError, match=r"missing features\.\S+, features\.\S+, features\.\S+ \(\+\d+ more\)"
    ):
        load_weights(model, tmp_path / "few.safetensors")
