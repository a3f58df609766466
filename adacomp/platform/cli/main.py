"""The `adacomp` command: a thin layer over the Python API.

Errors a user can cause (AdacompError, including task errors) end in one line on stderr and exit
code 2; anything else is our bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from adacomp import __version__
from adacomp.errors import AdacompError

EXIT_USAGE = 2


def _add_task_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        default="digits",
        help="built-in task name (see `adacomp tasks`) or package.module:function returning a Task",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adacomp", description="Usage-driven, adaptive model compression.")
    parser.add_argument("--version", action="version", version=f"adacomp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compress = commands.add_parser("compress", help="apply a plan, fine-tune, evaluate, export ONNX")
    _add_task_args(compress)
    compress.add_argument(
        "--plan", required=True, type=Path, help="plan JSON (see `adacomp space --write-example`)"
    )
    compress.add_argument("--out", required=True, type=Path, help="output directory")
    compress.add_argument("--weights", type=Path, help="start from these trained weights (safetensors)")
    compress.add_argument("--seed", type=int, default=0)
    budget = compress.add_mutually_exclusive_group()
    budget.add_argument("--finetune-epochs", type=float, help="override the task's fine-tune budget")
    budget.add_argument("--finetune-steps", type=int, help="override the task's fine-tune budget")
    budget.add_argument("--no-finetune", action="store_true", help="evaluate right after compressing")
    compress.add_argument("--distill", action="store_true", help="distil from the uncompressed model")
    compress.add_argument("--cache-dir", type=Path, help="where trained baselines are cached")

    space = commands.add_parser("space", help="print a model's search space")
    _add_task_args(space)
    space.add_argument("--json", action="store_true", help="print the space as JSON")
    space.add_argument("--write-example", type=Path, metavar="PLAN", help="write a valid example plan here")

    commands.add_parser("tasks", help="list the built-in tasks")

    from adacomp.platform.cli.farm import add_farm_parser
    from adacomp.platform.cli.ops import add_ops_parsers
    from adacomp.platform.cli.runtime import add_runtime_parser
    from adacomp.platform.cli.search import add_search_parsers
    from adacomp.platform.cli.supernet import add_supernet_parsers

    add_farm_parser(commands)
    add_search_parsers(commands)
    add_supernet_parsers(commands)
    add_runtime_parser(commands)
    add_ops_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compress":
            return _compress(args)
        if args.command == "space":
            return _space(args)
        if args.command == "tasks":
            return _tasks()
        if args.command == "farm":
            from adacomp.platform.cli.farm import run_farm

            return run_farm(args)
        if args.command in ("supernet", "export"):
            from adacomp.platform.cli import supernet as supernet_cli

            if args.command == "export":
                return supernet_cli.run_export_command(args)
            return supernet_cli.run_supernet_command(args)
        if args.command == "runtime":
            from adacomp.platform.cli.runtime import run_runtime

            return run_runtime(args)
        if args.command in ("submit", "nightly"):
            from adacomp.platform.cli import ops as ops_cli

            if args.command == "nightly":
                return ops_cli.run_nightly_command(args)
            return ops_cli.run_submit_command(args)
        if args.command in ("search", "pareto", "ui"):
            from adacomp.platform.cli import search as search_cli

            runner = {
                "search": search_cli.run_search_command,
                "pareto": search_cli.run_pareto_command,
                "ui": search_cli.run_ui_command,
            }[args.command]
            return runner(args)
    except AdacompError as exc:
        print(f"adacomp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"adacomp: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command!r}")


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
    from adacomp.platform.table import format_table, human_count
    from adacomp.search_spaces import build_space
    from adacomp.tasks import load_task

    task = load_task(args.task)
    space = build_space(task.build_model(), task.example_input(2))
    if args.json:
        print(json.dumps(space.to_dict(), indent=2))
    else:
        rows = []
        for layer in space.layers:
            for i, (technique, params) in enumerate(layer.techniques.items()):
                described = ", ".join(f"{p}: {spec.describe()}" for p, spec in params.items()) or "-"
                head = [
                    layer.name,
                    layer.site.module_type,
                    human_count(layer.parameters),
                    human_count(layer.site.macs),
                ]
                rows.append([*(head if i == 0 else [""] * 4), technique, described])
        print(f"search space of task {task.name!r}: {len(space.layers)} compressible layers")
        print(format_table(["layer", "type", "params", "MACs", "technique", "parameters"], rows))
    if args.write_example is not None:
        plan = space.example_plan()
        args.write_example.parent.mkdir(parents=True, exist_ok=True)
        plan.save(args.write_example)
        print(f"\nexample plan written to {args.write_example}: {plan}", file=sys.stderr)
    return 0


def _tasks() -> int:
    from adacomp.platform.table import format_table
    from adacomp.tasks import builtin_task_names, load_task

    rows = []
    for name in builtin_task_names():
        task = load_task(name)
        rows.append([name, "x".join(map(str, task.input_shape)), task.num_classes, task.description])
    print(format_table(["task", "input", "classes", "description"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
