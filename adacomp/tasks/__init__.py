"""Built-in example tasks (model + data + budgets) and the training/evaluation they share."""

from adacomp.tasks._base import Augment, DataSplits, Task, TaskError, TrainBudget
from adacomp.tasks.digits import digits_task
from adacomp.tasks.mnist1d import mnist1d_task
from adacomp.tasks.mobile import mobile_task
from adacomp.tasks.pretrained import load_weights, pretrained_model
from adacomp.tasks.registry import builtin_task_names, load_task, register_task
from adacomp.tasks.resnet import shapes_resnet_task
from adacomp.tasks.training import (
    TrainingDiverged,
    TrainReport,
    evaluate,
    evaluate_onnx,
    predict_onnx,
    train,
)
from adacomp.tasks.user_data import load_image_folder, load_numpy_arrays, split_dataset

register_task("digits", digits_task, replace=True)
register_task("mnist1d", mnist1d_task, replace=True)
register_task("mobilenet_digits", mobile_task, replace=True)
register_task("shapes_resnet", shapes_resnet_task, replace=True)

__all__ = [
    "Augment",
    "DataSplits",
    "Task",
    "TaskError",
    "TrainBudget",
    "TrainReport",
    "TrainingDiverged",
    "builtin_task_names",
    "evaluate",
    "evaluate_onnx",
    "load_image_folder",
    "load_numpy_arrays",
    "load_task",
    "load_weights",
    "predict_onnx",
    "pretrained_model",
    "register_task",
    "split_dataset",
    "train",
]
