"""`adacomp compress`, `adacomp space`, `adacomp tasks`: one model and its search space, by hand."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from adacomp.errors import AdacompError
from adacomp.platform.cli.args import integer, number


def _add_task_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        default="digits",
        help="built-in task name (see `adacomp tasks`) or package.module:function returning a Task",
    )


def add_model_parsers(commands: Any) -> None:
    compress = commands.add_parser("compress", help="apply a plan, fine-tune, evaluate, export ONNX")
    _add_task_args(compress)
    compress.add_argument(
        "--plan", required=True, type=Path, help="plan JSON (see `adacomp space --write-example`)"
    )
    compress.add_argument("--out", required=True, type=Path, help="output directory")
    compress.add_argument("--weights", type=Path, help="start from these trained weights (safetensors)")
    compress.add_argument("--seed", type=integer(0, 2**32 - 1), default=0)
    budget = compress.add_mutually_exclusive_group()
    budget.add_argument(
        "--finetune-epochs",
        type=number(0, 100_000, above_low=True),
        help="override the task's fine-tune budget",
    )
    budget.add_argument(
        "--finetune-steps", type=integer(1, 100_000_000), help="override the task's fine-tune budget"
    )
    budget.add_argument("--no-finetune", action="store_true", help="evaluate right after compressing")
    compress.add_argument("--distill", action="store_true", help="distil from the uncompressed model")
    compress.add_argument("--cache-dir", type=Path, help="where trained baselines are cached")

    space = commands.add_parser("space", help="print a model's search space")
    _add_task_args(space)
    space.add_argument("--json", action="store_true", help="print the space as JSON")
    space.add_argument(
        "--grouping",
        choices=["auto", "block", "shape", "layer"],
        default="auto",
        help="layers that share one choice, as a search's `space.grouping` (default: auto)",
    )
    space.add_argument(
        "--sensitivity",
        action="store_true",
        help="probe the trained model (training it first if it is not cached) and show the table",
    )
    space.add_argument(
        "--max-drop",
        type=number(0, 100, above_low=True),
        help="sensitivity budget in accuracy points (default: a search's `space.max_drop`)",
    )
    space.add_argument("--write-example", type=Path, metavar="PLAN", help="write a valid example plan here")

    tasks = commands.add_parser("tasks", help="list the built-in tasks")
    compress.set_defaults(run=_compress)
    space.set_defaults(run=_space)
    tasks.set_defaults(run=_tasks)


def _compress(args: argparse.Namespace) -> int:
    from adacomp.platform.evaluate.compress_job import run_compress
    from adacomp.search_spaces import CompressionPlan
    from adacomp.tasks import load_task

    plan = CompressionPlan.load(args.plan)
    task = load_task(args.task)
    finetune = None
    if args.finetune_epochs is not None:
        finetune = replace(task.finetune_budget, epochs=args.finetune_epochs)
    elif args.finetune_steps is not None:
        finetune = replace(task.finetune_budget, steps=args.finetune_steps)
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731 - progress goes to stderr
    result = run_compress(
        task,
        plan,
        args.out,
        seed=args.seed,
        weights=args.weights,
        finetune=finetune,
        skip_finetune=args.no_finetune,
        distill=args.distill,
        cache_dir=args.cache_dir,
        log=log,
    )
    print(f"task {result.task}  plan {result.plan.hash}  ({result.seconds:.1f} s)")
    print(result.table())
    files = "model.onnx, baseline.onnx, plan.json, weights.safetensors, report.json"
    print(f"\nwritten to {result.out_dir}/: {files}")
    return 0


def _space(args: argparse.Namespace) -> int:
    from adacomp.platform.evaluate.sensitivity import analyse_sensitivity, bounded_space
    from adacomp.platform.search_config import SpaceSettings
    from adacomp.search_spaces import build_space
    from adacomp.search_spaces.groups import group_layers, resolve_grouping
    from adacomp.tasks import load_task, pretrained_model

    task = load_task(args.task)
    example = task.example_input(2)
    model = pretrained_model(task) if args.sensitivity else task.build_model()
    layers = build_space(model, example, blocks=True)
    grouping = resolve_grouping(layers, model, args.grouping)
    space = group_layers(layers, model, grouping)
    report = None
    if args.sensitivity:
        max_drop = SpaceSettings().max_drop if args.max_drop is None else args.max_drop  # a search's default
        if max_drop <= 0:
            raise AdacompError(f"max_drop: expected a number of points > 0, got {max_drop}")
        report = analyse_sensitivity(model, space, task.data.val, example, max_drop=max_drop)
        space = bounded_space(space, report)
    if args.json:
        data = space.to_dict()
        data.update(grouping=grouping, sensitivity=report.to_dict() if report else None)
        print(json.dumps(data, indent=2))
    else:
        print(
            f"search space of task {task.name!r}: {layers.size()}, "
            f"{len(space.layers)} choices (grouping {grouping})"
        )
        print(_space_table(space))
        if space.withheld():
            print("\n" + _withheld_text(space))
        if report is not None:
            print("\n" + report.table())
    if args.write_example is not None:
        plan = space.example_plan()
        args.write_example.parent.mkdir(parents=True, exist_ok=True)
        plan.save(args.write_example)
        print(f"\nexample plan written to {args.write_example}: {plan}", file=sys.stderr)
    return 0


def _space_table(space: Any) -> str:
    from adacomp.platform.table import format_table, human_count

    rows = []
    for entry in space.layers:
        count = len(entry.layer_names)
        for i, (technique, params) in enumerate(entry.techniques.items()):
            described = ", ".join(f"{p}: {spec.describe()}" for p, spec in params.items()) or "-"
            head = [
                entry.name,
                str(count),
                entry.site.module_type,
                human_count(entry.parameters),
                human_count(entry.site.macs),
            ]
            rows.append([*(head if i == 0 else [""] * 5), technique, described])
    return format_table(["choice", "layers", "type", "params", "MACs", "technique", "parameters"], rows)


def _withheld_text(space: Any) -> str:
    """What the model's structure rules out, layer by layer, with why."""
    lines = [f"  {layer}: no {technique}: {why}" for layer, technique, why in space.withheld()]
    return "\n".join(["not offered:", *lines])


def _tasks(args: argparse.Namespace) -> int:
    from adacomp.platform.table import format_table
    from adacomp.tasks import builtin_task_names, load_task

    rows = []
    for name in builtin_task_names():
        task = load_task(name)
        rows.append([name, "x".join(map(str, task.input_shape)), task.num_classes, task.description])
    print(format_table(["task", "input", "classes", "description"], rows))
    return 0
