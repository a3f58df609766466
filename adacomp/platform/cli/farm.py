"""`adacomp farm ...`: list devices, measure a model, serve an agent, calibrate an emulator."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from adacomp.errors import AdacompError
from adacomp.platform.cli.args import integer, number

DEFAULT_STORE = Path(".adacomp") / "measurements"
# The agent's defaults (kept here too: the parser is built without importing the server).
DEFAULT_REQUEST_DEADLINE_S = 120.0
DEFAULT_MAX_CONNECTIONS = 16


def _cores(text: str) -> tuple[int, ...]:
    try:
        cores = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected core numbers like 0,1 got {text!r}") from None
    if not cores or min(cores) < 0:
        raise argparse.ArgumentTypeError(f"expected core numbers like 0,1 got {text!r}")
    return cores


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: a number above zero, else a one-line usage error."""

    expected = f"expected a {'whole ' if kind is int else ''}number above 0"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    return parse


def add_farm_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    farm = commands.add_parser("farm", help="the device farm: list, measure, agent, calibrate")
    sub = farm.add_subparsers(dest="farm_command", required=True, metavar="FARM_COMMAND")

    def with_config(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", type=Path, help="farm YAML (default: emulated profiles + this host)")

    listing = sub.add_parser("list", help="devices and their health")
    with_config(listing)

    measure = sub.add_parser("measure", help="measure one ONNX model on one device")
    measure.add_argument("model", type=Path)
    measure.add_argument("--device", required=True)
    with_config(measure)
    measure.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"measurement store (default: the farm config's `store`, else {DEFAULT_STORE})",
    )
    measure.add_argument("--fresh", action="store_true", help="measure even if the store has this model")
    measure.add_argument("--threads", type=integer(1, 1024), default=1, help="intra-op threads")
    measure.add_argument("--batch-size", type=integer(1, 4096), default=1)
    measure.add_argument("--json", action="store_true", help="print the Measurement as JSON")

    agent = sub.add_parser("agent", help="serve this machine's CPU to a remote farm over HTTP")
    agent.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    agent.add_argument("--port", type=integer(0, 65535), default=8470)
    agent.add_argument("--token-file", type=Path, required=True)
    agent.add_argument("--name", default="agent")
    agent.add_argument("--class", dest="device_class", default="host")
    agent.add_argument("--cores", type=_cores, help="pin measurements to these cores, e.g. 2,3")
    agent.add_argument(
        "--max-model-mb",
        type=number(0, 1e6, above_low=True),
        default=256.0,
        help="largest model upload, in MiB (default: 256)",
    )
    agent.add_argument(
        "--request-timeout",
        type=number(0, 86400, above_low=True),
        default=300.0,
        help="seconds per measurement",
    )
    agent.add_argument(
        "--request-deadline",
        type=_positive(float),
        default=DEFAULT_REQUEST_DEADLINE_S,
        help="seconds a client has to send a whole request, headers and body "
        f"(default {DEFAULT_REQUEST_DEADLINE_S:g}); a slower one is cut off",
    )
    agent.add_argument(
        "--max-connections",
        type=_positive(int),
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"connections served at once (default {DEFAULT_MAX_CONNECTIONS}); more are answered 503",
    )

    calibrate = sub.add_parser("calibrate", help="fit an emulator profile to a real device")
    calibrate.add_argument("--device", default="host")
    with_config(calibrate)
    calibrate.add_argument("--models", type=int, default=48, help="how many generated models to measure")
    calibrate.add_argument(
        "--out", type=Path, default=Path(".adacomp") / "profiles", help="where the fitted profile goes"
    )
    calibrate.add_argument("--store", type=Path, default=DEFAULT_STORE)
    calibrate.add_argument("--seed", type=integer(0, 2**32 - 1), default=0)
    calibrate.add_argument("--threads", type=int, default=1, help="intra-op threads the device runs with")
    calibrate.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="adaptive-sampling rounds (more models where the fit is worst)",
    )
    calibrate.add_argument(
        "--held-out",
        type=integer(0, 100_000),
        default=None,
        help="models measured only to check (default: a quarter of --models)",
    )
    calibrate.add_argument(
        "--from",
        dest="transfer_from",
        help="few-shot: a calibrated profile (name or YAML) whose learned model is transferred here",
    )
    calibrate.add_argument(
        "--shots", type=integer(1, 100_000), default=10, help="few-shot: how many models to measure"
    )
    calibrate.add_argument(
        "--passes",
        type=integer(1, 100),
        default=2,
        help="measure every model this many times, apart, and keep the fastest",
    )
    calibrate.add_argument(
        "--no-repeat", action="store_true", help="skip measuring the held-out models twice (no noise floor)"
    )
    calibrate.add_argument(
        "--resume",
        action="store_true",
        help="continue the calibration whose journal is in --out, measuring only what it had not",
    )
    calibrate.add_argument("--verbose", action="store_true", help="one line per measurement")
    farm.set_defaults(run=run_farm)


def run_farm(args: argparse.Namespace) -> int:
    if args.farm_command == "list":
        return _list(args)
    if args.farm_command == "measure":
        return _measure(args)
    if args.farm_command == "agent":
        return _agent(args)
    if args.farm_command == "calibrate":
        return _calibrate(args)
    raise AssertionError(args.farm_command)


def _list(args: argparse.Namespace) -> int:
    from adacomp.device_farm import open_farm
    from adacomp.platform.table import format_table

    farm = open_farm(args.config)
    statuses = farm.status()  # health checks may be network round trips: once
    rows = []
    for status in statuses:
        state = "ok" if status.healthy else "DOWN"
        if status.quarantined_for_s:
            state = f"quarantined {status.quarantined_for_s:.0f} s"
        rows.append([status.name, status.kind, status.device_class, state, status.identity, status.detail])
    print(format_table(["device", "kind", "class", "health", "identity", "detail"], rows))
    return 0 if all(s.healthy for s in statuses) else 1


def _measure(args: argparse.Namespace) -> int:
    from adacomp.device_farm import MeasureSettings, OnnxModel, open_farm

    model = OnnxModel.from_path(args.model)
    model.proto()
    try:
        settings = MeasureSettings(intra_op_threads=args.threads, batch_size=args.batch_size)
    except ValueError as exc:
        raise AdacompError(f"bad measurement settings: {str(exc).splitlines()[-1].strip()}") from None
    farm = open_farm(args.config, store=args.store, default_store=DEFAULT_STORE)
    try:
        measurement = farm.measure(model, args.device, settings, fresh=args.fresh)
    finally:
        farm.close()
    if args.json:
        print(json.dumps(measurement.to_dict(), indent=2))
    else:
        print(measurement.summary())
        if measurement.notes:
            print(f"notes: {measurement.notes}")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from adacomp.device_farm.agent_server import serve

    try:
        serve(
            args.host,
            args.port,
            args.token_file,
            name=args.name,
            device_class=args.device_class,
            cores=args.cores,
            max_model_bytes=int(args.max_model_mb * 1024 * 1024),
            request_timeout_s=args.request_timeout,
            request_deadline_s=args.request_deadline,
            max_connections=args.max_connections,
        )
    except KeyboardInterrupt:
        print("agent stopped", file=sys.stderr)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from adacomp.platform.cli.calibration_bar import CalibrationBar
    from adacomp.platform.ops.calibrate import run_calibration
    from adacomp.platform.ops.calibration_progress import Books

    with CalibrationBar() as bar:
        books = Books(say=bar.say, detail=bar.say if args.verbose else Books().detail, progress=bar)
        report = run_calibration(
            device=args.device,
            config=args.config,
            models=args.models,
            out_dir=args.out,
            store=args.store,
            seed=args.seed,
            threads=args.threads,
            rounds=args.rounds,
            held_out=args.held_out,
            transfer_from=args.transfer_from,
            shots=args.shots,
            repeat=not args.no_repeat,
            passes=args.passes,
            resume=args.resume,
            books=books,
        )
    print(report.table())
    print(f"\nfitted profile written to {report.profile_path}")
    return 0
