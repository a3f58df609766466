"""`adacomp runtime simulate`: replay a context trace through a bundle's selector, against one static model.

It answers "what does adaptation buy on this device?" without running a model: the manifest's
measurements are the costs, the trace is the usage (the built-in battery-drain day or a file).
The static model is what you would ship without adaptation: the selector's pick for the first
context, unless --static names one.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adacomp.platform.cli.args import integer

MAX_TRACE_STEPS = 10_000_000  # a day at 10 ms steps; a trace is held in memory

if TYPE_CHECKING:  # numpy and onnxruntime load when the command runs, not for every `adacomp`
    from adacomp.runtime import Manifest, Replay, TracePoint

DRAIN = "drain"
MAX_ROWS = 40  # a longer trace prints every Nth step plus every switch


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _slack(text: str) -> float:
    value = _non_negative(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_runtime_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    runtime = commands.add_parser("runtime", help="the on-device runtime: simulate adaptation on a bundle")
    sub = runtime.add_subparsers(dest="runtime_command", required=True, metavar="RUNTIME_COMMAND")
    simulate = sub.add_parser(
        "simulate", help="replay a context trace: adaptive selection vs one static model"
    )
    simulate.add_argument("bundle", type=Path, help="bundle directory (manifest.json + models/)")
    simulate.add_argument("--device", help="device of the manifest to simulate (default: its first)")
    simulate.add_argument(
        "--trace", default=DRAIN, help="trace file (.csv or .json) or 'drain', the built-in battery-drain day"
    )
    simulate.add_argument("--steps", type=int, default=120, help="length of the drain trace (default 120)")
    simulate.add_argument(
        "--seed", type=integer(0, 2**32 - 1), default=0, help="noise seed of the drain trace"
    )
    simulate.add_argument(
        "--static",
        metavar="ID",
        help="the static model to compare with (default: the pick for the first context)",
    )
    simulate.add_argument("--margin", type=_non_negative, default=0.02, help="utility gain needed to switch")
    simulate.add_argument("--slack", type=_slack, default=0.05, help="budget fraction a switch keeps spare")
    simulate.add_argument("--plot", type=Path, metavar="PNG", help="write accuracy/latency/battery over time")
    simulate.add_argument(
        "--json", type=Path, metavar="FILE", help="write the summary and every step as JSON"
    )
    runtime.set_defaults(run=run_runtime)


def run_runtime(args: argparse.Namespace) -> int:
    if args.runtime_command == "simulate":
        return _simulate(args)
    raise AssertionError(args.runtime_command)


def _simulate(args: argparse.Namespace) -> int:
    from adacomp.errors import AdacompError
    from adacomp.platform.table import format_table
    from adacomp.runtime import (
        Selector,
        drain_trace,
        load_manifest,
        load_trace,
        replay,
        replay_static,
        verify_files,
    )

    manifest = load_manifest(args.bundle)
    verify_files(args.bundle, manifest)
    device = args.device if args.device is not None else manifest.devices[0]
    selector = Selector(manifest, device, margin=args.margin, slack=args.slack)
    if args.trace == DRAIN:
        if not 2 <= args.steps <= MAX_TRACE_STEPS:
            raise AdacompError(f"--steps: expected 2 to {MAX_TRACE_STEPS:,}, got {args.steps}")
        latency = (float(selector.latency_ms.min()), float(selector.latency_ms.max()))
        memory = (float(selector.memory_mb.min()), float(selector.memory_mb.max()))
        trace = drain_trace(latency, args.steps, args.seed, memory_range_mb=memory)
        trace_name = f"drain ({args.steps} steps, seed {args.seed})"
    else:
        trace = load_trace(args.trace)
        trace_name = str(args.trace)
    static_id = args.static
    if static_id is None:
        static_id = (
            Selector(manifest, device, margin=args.margin, slack=args.slack).select(trace[0].context).id
        )
    manifest.index(static_id)  # an unknown --static fails here, in one line

    adaptive = replay(selector, trace)
    static = replay_static(manifest, device, static_id, trace)
    print(
        f"bundle {manifest.name!r} ({len(manifest.configurations)} configurations) on {device}, "
        f"trace {trace_name}, margin {args.margin:g}, slack {args.slack:g}"
    )
    print(format_table(*_step_table(adaptive, static, selector.has_energy)))
    print()
    print(format_table(*_summary_table(adaptive, static)))
    if args.json is not None:
        _write_json(args, manifest, device, trace_name, static_id, adaptive, static)
        print(f"\nsteps and summary written to {args.json}")
    if args.plot is not None:
        _plot(args.plot, manifest, device, trace, adaptive, static)
        print(f"plot written to {args.plot}")
    return 0


def _shown_rows(adaptive: Replay) -> list[int]:
    steps = adaptive.steps
    if len(steps) <= MAX_ROWS:
        return list(range(len(steps)))
    every = math.ceil(len(steps) / (MAX_ROWS * 3 // 4))
    return [
        i
        for i, step in enumerate(steps)
        if i % every == 0 or step.switched or step.fallback or i == len(steps) - 1
    ]


def _step_table(adaptive: Replay, static: Replay, has_energy: bool) -> tuple[list[str], list[list[object]]]:
    headers = ["t", "battery", "budget ms", "free MiB", "config", "acc", "lat ms"]
    headers += ["energy mJ"] if has_energy else []
    headers += ["event", f"static {static.steps[0].id}" if static.steps else "static"]
    rows: list[list[object]] = []
    for i in _shown_rows(adaptive):
        step, fixed = adaptive.steps[i], static.steps[i]
        context = step.context
        event = "fallback" if step.fallback else "switch" if step.switched else ""
        if step.violated:
            event = f"{event} violates {'+'.join(step.violated)}".strip()
        row: list[object] = [
            f"{step.t:g}",
            _maybe(context.battery, "{:.2f}", ""),  # empty: not in the context
            _maybe(context.latency_budget_ms, "{:.3g}", ""),
            _maybe(context.free_memory_mb, "{:.3g}", ""),
            step.id,
            f"{step.accuracy:.4f}",
            f"{step.latency_ms:.3g}",
        ]
        row += [_maybe(step.energy_mj, "{:.3g}")] if has_energy else []
        row += [event, "violates " + "+".join(fixed.violated) if fixed.violated else "ok"]
        rows.append(row)
    return headers, rows


def _summary_table(adaptive: Replay, static: Replay) -> tuple[list[str], list[list[object]]]:
    a, s = adaptive.summary(), static.summary()
    rows: list[list[object]] = [
        ["configurations used", a["configurations_used"], static.steps[0].id if static.steps else "-"],
        ["switches", a["switches"], s["switches"]],
        ["fallbacks (nothing fits)", a["fallbacks"], "-"],
        [
            "steps violating the context",
            f"{a['violations']} / {a['steps']}",
            f"{s['violations']} / {s['steps']}",
        ],
        ["mean accuracy", f"{a['mean_accuracy']:.4f}", f"{s['mean_accuracy']:.4f}"],
        ["mean latency ms", f"{a['mean_latency_ms']:.4g}", f"{s['mean_latency_ms']:.4g}"],
        ["total energy mJ", _maybe(a["total_energy_mj"], "{:.4g}"), _maybe(s["total_energy_mj"], "{:.4g}")],
    ]
    return ["", "adaptive", "static"], rows


def _maybe(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else spec.format(value)


def _write_json(
    args: argparse.Namespace,
    manifest: Manifest,
    device: str,
    trace_name: str,
    static_id: str,
    adaptive: Replay,
    static: Replay,
) -> None:
    data: dict[str, Any] = {
        "bundle": str(args.bundle),
        "name": manifest.name,
        "device": device,
        "trace": trace_name,
        "margin": args.margin,
        "slack": args.slack,
        "static_id": static_id,
        "adaptive": adaptive.to_dict(),
        "static": static.to_dict(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _plot(
    path: Path, manifest: Manifest, device: str, trace: list[TracePoint], adaptive: Replay, static: Replay
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.t for p in trace]
    figure, (acc_ax, lat_ax, bat_ax) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for replayed, colour in ((adaptive, "tab:blue"), (static, "tab:orange")):
        acc_ax.step(t, [s.accuracy for s in replayed.steps], where="post", c=colour, label=replayed.label)
        lat_ax.step(t, [s.latency_ms for s in replayed.steps], where="post", c=colour, label=replayed.label)
        broken = [(s.t, s.latency_ms) for s in replayed.steps if s.violated]
        if broken:
            lat_ax.scatter(*zip(*broken, strict=True), marker="x", c=colour, s=18, zorder=4)
    budget = [(p.t, p.context.latency_budget_ms) for p in trace if p.context.latency_budget_ms is not None]
    if budget:
        lat_ax.step(*zip(*budget, strict=True), where="post", c="0.4", ls="--", lw=1, label="latency budget")
    acc_ax.set_ylabel("accuracy")
    lat_ax.set_ylabel("latency ms (x: violates)")
    acc_ax.legend(fontsize=8)
    lat_ax.legend(fontsize=8)
    battery = [(p.t, p.context.battery) for p in trace if p.context.battery is not None]
    if battery:
        bat_ax.plot(*zip(*battery, strict=True), c="tab:green", label="battery")
    bat_ax.set_ylim(0, 1.05)
    bat_ax.set_ylabel("battery")
    free = [(p.t, p.context.free_memory_mb) for p in trace if p.context.free_memory_mb is not None]
    if free:
        mem_ax = bat_ax.twinx()
        mem_ax.scatter(*zip(*free, strict=True), c="tab:purple", s=8, label="free memory MiB")
        mem_ax.set_ylim(bottom=0)
        mem_ax.set_ylabel("free memory MiB")
        mem_ax.legend(fontsize=8, loc="lower right")
    bat_ax.set_xlabel("t")
    bat_ax.legend(fontsize=8, loc="lower left")
    for ax in (acc_ax, lat_ax, bat_ax):
        ax.grid(alpha=0.3)
    figure.suptitle(f"{manifest.name} on {device}: adaptive vs static")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
