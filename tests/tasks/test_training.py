from __future__ import annotations

import itertools
import pickle

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from adacomp.tasks import (
    TaskError,
    TrainBudget,
    TrainingDiverged,
    evaluate,
    evaluate_onnx,
    load_task,
    predict_onnx,
    train,
)
from adacomp.tasks.datasets import TensorPairDataset


def _mean_loss(model: nn.Module, data: TensorPairDataset) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(data.inputs), data.labels))


def _fresh_digits_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return load_task("digits").build_model()


def test_training_reduces_the_loss_and_is_seeded() -> None:
    task = load_task("digits")
    data = task.data.train
    assert isinstance(data, TensorPairDataset)
    budget = TrainBudget(steps=50, batch_size=64, lr=3e-3)
    model = _fresh_digits_model()
    before = _mean_loss(model, data)
    report = train(model, data, budget, seed=1)
    assert report.steps == 50 and report.seconds > 0
    assert not model.training  # left in eval mode
    assert _mean_loss(model, data) < 0.5 * before
    assert evaluate(model, task.data.val) > 0.8
    again = _fresh_digits_model()
    assert train(again, data, budget, seed=1).final_loss == report.final_loss
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_epochs_set_the_steps_and_the_global_rng_is_untouched() -> None:
    data = load_task("digits").data.train  # 1078 samples
    model = _fresh_digits_model()
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    report = train(model, data, TrainBudget(epochs=0.25, batch_size=100), seed=3)
    assert report.steps == 3  # ceil(0.25 * 1078 / 100)
    assert torch.equal(torch.rand(1), expected)


def test_nan_loss_raises_training_diverged_with_the_step() -> None:
    data = load_task("digits").data.train

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x.flatten(1)) * float("nan")

    with pytest.raises(TrainingDiverged, match="training diverged at step 1: loss=nan") as caught:
        train(Broken(), data, TrainBudget(steps=3))
    assert caught.value.step == 1 and isinstance(caught.value, TaskError)
    copy = pickle.loads(pickle.dumps(caught.value))  # survives a trip to a worker process
    assert isinstance(copy, TrainingDiverged) and copy.step == 1


def test_absurd_learning_rate_diverges() -> None:
    data = load_task("digits").data.train
    with pytest.raises(TrainingDiverged, match=r"at step [0-9]+"):
        train(_fresh_digits_model(), data, TrainBudget(steps=30, lr=1e30))


def test_distillation_pulls_the_student_towards_the_teacher() -> None:
    task = load_task("digits")
    teacher = _fresh_digits_model(seed=0)
    train(teacher, task.data.train, TrainBudget(steps=40, lr=3e-3))
    student = _fresh_digits_model(seed=1)
    report = train(
        student, task.data.train, TrainBudget(steps=40, lr=3e-3), teacher=teacher, distill_weight=1.0
    )
    assert report.steps == 40 and np.isfinite(report.final_loss)
    inputs = task.data.val.inputs  # type: ignore[attr-defined]
    with torch.no_grad():
        agreement = (student(inputs).argmax(1) == teacher(inputs).argmax(1)).float().mean()
    assert float(agreement) > 0.8
    with pytest.raises(TaskError, match=r"distill_weight=1\.5"):
        train(student, task.data.train, TrainBudget(steps=1), teacher=teacher, distill_weight=1.5)
    with pytest.raises(TaskError, match="temperature=0"):
        train(student, task.data.train, TrainBudget(steps=1), teacher=teacher, temperature=0)


def test_pruned_models_train_and_keep_their_masks() -> None:
    data = load_task("digits").data.train
    model = _fresh_digits_model()
    fc1 = model.get_submodule("fc1")
    prune.l1_unstructured(fc1, name="weight", amount=0.5)  # type: ignore[no-untyped-call]
    mask: Tensor = fc1.get_buffer("weight_mask").clone()
    train(model, data, TrainBudget(steps=10))
    assert torch.equal(fc1.get_buffer("weight_mask"), mask)
    weight: Tensor = getattr(fc1, "weight")  # noqa: B009 - recomputed by the prune hook, not a parameter
    assert torch.count_nonzero(weight[mask == 0]) == 0


def test_evaluate_and_onnx_agree() -> None:
    task = load_task("digits")
    model = _fresh_digits_model()
    train(model, task.data.train, TrainBudget(steps=20))
    x = task.example_input(2)
    program = torch.onnx.export(
        model, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False
    )
    assert program is not None
    onnx_model = program.model_proto.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(onnx_model))
    accuracy = evaluate(model, task.data.test)
    assert 0.5 < accuracy <= 1.0
    assert evaluate_onnx(onnx_model, task.data.test, batch_size=100) == pytest.approx(accuracy, abs=0.003)
    batch = task.calibration_batches(1, 7)[0].astype(np.float64)  # cast to float32 inside
    with torch.no_grad():
        expected = model(torch.from_numpy(batch).float()).numpy()
    np.testing.assert_allclose(predict_onnx(onnx_model, batch), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(TaskError, match="onnxruntime cannot load the model"):
        predict_onnx(b"not onnx", batch)


def test_bad_data_and_batch_sizes_are_task_errors() -> None:
    model = _fresh_digits_model()
    empty = TensorPairDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0))
    with pytest.raises(TaskError, match="empty"):
        train(model, empty, TrainBudget(steps=1))
    with pytest.raises(TaskError, match="batch_size=0"):
        evaluate(model, load_task("digits").data.val, batch_size=0)


def _update_sizes(schedule: str) -> list[float]:
    """Size of each step's weight update, seen from the augment hook (called once per batch)."""
    data = TensorPairDataset(torch.randn(64, 4), torch.arange(64) % 2)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    snapshots: list[Tensor] = []

    def record(inputs: Tensor, generator: torch.Generator) -> Tensor:
        assert isinstance(generator, torch.Generator)
        snapshots.append(model.weight.detach().clone())
        return inputs

    budget = TrainBudget(steps=20, batch_size=16, lr=0.05, schedule=schedule)  # type: ignore[arg-type]
    train(model, data, budget, seed=0, augment=record)
    snapshots.append(model.weight.detach().clone())
    return [float((b - a).norm()) for a, b in itertools.pairwise(snapshots)]


def test_cosine_schedule_anneals_the_updates_and_augment_sees_every_batch() -> None:
    cosine, constant = _update_sizes("cosine"), _update_sizes("constant")
    assert len(cosine) == len(constant) == 20
    assert cosine[0] == pytest.approx(constant[0])  # the same first step: full lr
    assert cosine[-1] < 0.05 * constant[-1]  # the last step's lr is ~0 (measured 0.0002 vs 0.014)
    assert sum(cosine[-5:]) < 0.3 * sum(constant[-5:])
    with pytest.raises(TaskError, match="schedule"):
        TrainBudget(schedule="linear")  # type: ignore[arg-type]


def test_augmentation_is_seeded_and_leaves_the_data_untouched() -> None:
    from adacomp.tasks.augment import RandomCrop

    task = load_task("digits")
    before = task.data.train.inputs.clone()  # type: ignore[attr-defined]
    budget = TrainBudget(steps=5, batch_size=32)
    a, b = _fresh_digits_model(), _fresh_digits_model()
    train(a, task.data.train, budget, seed=3, augment=RandomCrop(padding=2))
    train(b, task.data.train, budget, seed=3, augment=RandomCrop(padding=2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert torch.equal(task.data.train.inputs, before)  # type: ignore[attr-defined]


def test_scoring_an_artifact_uses_the_threads_torch_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial worker gets one core (Tune sets torch to one thread): its accuracy pass must not
    start one spinning ORT thread per core of the machine, on the cores of the trials beside it."""
    from adacomp.search_spaces import export_onnx
    from adacomp.tasks.training import _session

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    onnx_model = export_onnx(model, torch.zeros(1, 4))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    options = _session(onnx_model).get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
