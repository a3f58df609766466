"""An Android phone over adb: onnxruntime's `onnxruntime_perf_test` on the phone's CPU.

One measurement: push the model (named by its content hash), the benchmark binary (and any shared
libraries it needs) and a small shell script, each only once (`ls` says what is already there;
pushes land under a temporary name and are renamed, so an interrupted push is never mistaken for a
cached file); then one `adb shell` runs the script, which samples the battery fuel gauge while idle,
starts `onnxruntime_perf_test -e cpu -m times -r N -x T -I -s MODEL result.csv` in the background,
samples the gauge until it exits, and prints everything between markers. Latency comes from the
per-run result file when its numbers add up, else from the printed percentiles (see perf_output).
A run whose timing is noisier than `target_cv` is repeated once with more runs (up to `max_runs`,
within `max_seconds`); perf_test does exactly one warm-up run of its own.

Energy (per inference) = (mean power while the benchmark runs - mean power idle just before)
x the timed loop's wall time / inferences, with power = |current_now| (uA) x voltage_now (uV) from
/sys/class/power_supply/battery. Caveats (each Measurement's notes say how its energy was made):
- Over USB the phone charges, and the fuel gauge measures battery current *net of the charger*:
  the numbers mean nothing then. Only a battery whose kernel status reads "Discharging" is used;
  otherwise energy is None. `dumpsys battery unplug` (the `unplug` toggle, undone with
  `dumpsys battery reset` in a finally block) only changes what the Android framework reports --
  on most phones the charger keeps charging. Use adb over Wi-Fi with the cable out, a phone whose
  charging can be switched off (vendor-specific, root), or a USB power meter / Monsoon instead.
- Many fuel gauges average current over a second or more and update slowly, so short runs say
  little: under MIN_BUSY_SAMPLES samples energy is None, and the notes give the sample count and
  span so that a short run can be judged.
- The idle baseline includes the screen and whatever else runs; the busy mean includes session
  creation. Both are whole-phone figures, not the CPU alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from adacomp.device_farm.devices._base import Device, DeviceError, Health, ModelRefused
from adacomp.device_farm.devices.perf_output import (
    PerfOutput,
    PerfOutputError,
    latency_stats,
    parse_perf_output,
    parse_result_file,
)
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings

log = logging.getLogger(__name__)

BATTERY = "/sys/class/power_supply/battery"
MIN_BUSY_SAMPLES = 3
RESULT_FILE = "result.csv"
_STATE_HINTS = {
    "unauthorized": "accept the USB debugging prompt on the phone",
    "offline": "replug the cable or run 'adb reconnect'",
    "not found": "not attached, or a wrong serial",
    "no devices": "no phone attached",
}

# POSIX sh (runs under Android's mksh/toybox): no bashisms, one background job, markers on their own line.
MEASURE_SCRIPT = r"""# adacomp: run onnxruntime_perf_test while sampling the battery fuel gauge.
# usage: sh measure.sh RUN_DIR GAUGE_DIR INTERVAL_S IDLE_SAMPLES CPU_MASK BINARY [perf_test args...]
run=$1; psy=$2; interval=$3; idle=$4; mask=$5; bin=$6; shift 6
mkdir -p "$run" && cd "$run" || { echo "cannot enter $run" >&2; exit 97; }
rm -f stdout.txt stderr.txt rc.txt rc.tmp bench.pid result.csv
gauge=none
if [ -n "$psy" ] && [ -r "$psy/current_now" ] && [ -r "$psy/voltage_now" ]; then gauge=ok; fi
status=unknown
if [ -n "$psy" ] && [ -r "$psy/status" ]; then status=$(cat "$psy/status" 2>/dev/null); fi
echo "ADACOMP_GAUGE $gauge $status"
sample() {
  read up rest < /proc/uptime
  echo "$1 $up $(cat "$psy/current_now" 2>/dev/null) $(cat "$psy/voltage_now" 2>/dev/null)"
}
if [ "$gauge" = ok ]; then
  i=0
  while [ "$i" -lt "$idle" ]; do sample I; sleep "$interval"; i=$((i + 1)); done
fi
LD_LIBRARY_PATH="${bin%/*}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
(
  if [ -n "$mask" ]; then taskset "$mask" "$bin" "$@" > stdout.txt 2> stderr.txt &
  else "$bin" "$@" > stdout.txt 2> stderr.txt &
  fi
  echo $! > bench.pid
  wait $!
  echo $? > rc.tmp
  mv rc.tmp rc.txt
) &
while [ ! -f rc.txt ]; do
  sleep "$interval"
  if [ "$gauge" = ok ]; then sample B; fi
done
wait
rm -f bench.pid
echo "ADACOMP_RC $(cat rc.txt)"
printf '\nADACOMP_STDOUT\n'; cat stdout.txt
printf '\nADACOMP_STDERR\n'; cat stderr.txt
printf '\nADACOMP_RESULT\n'; if [ -f result.csv ]; then cat result.csv; fi
printf '\nADACOMP_END\n'
exit 0
"""

# The prefix of every ONNX Runtime error message: a perf_test run that ends with one failed on the
# model (it does not load, or a node cannot run), not on the phone.
ORT_ERROR = "[ONNXRuntimeError]"


class AdbTimeout(DeviceError):
    """adb did not finish in time (the phone may still be running what it was asked to)."""


@dataclass(frozen=True)
class FuelGauge:
    """Where and how to sample the battery fuel gauge."""

    path: str = BATTERY  # power_supply directory with current_now (uA), voltage_now (uV), status
    interval_s: float = 0.25
    idle_s: float = 2.0  # baseline sampled just before the benchmark starts
    # `dumpsys battery unplug` during the run (reset afterwards). Off by default: on most phones
    # it changes only what the framework reports, not whether the charger charges.
    unplug: bool = False


@dataclass(frozen=True)
class GaugeSample:
    uptime_s: float
    current_ua: float
    voltage_uv: float


@dataclass(frozen=True)
class RunOutput:
    """What the measure script printed, split into its parts."""

    gauge: str  # "ok" or "none"
    battery_status: str
    idle: tuple[GaugeSample, ...]
    busy: tuple[GaugeSample, ...]
    exit_code: int
    stdout: str
    stderr: str
    result_file: str


@dataclass(frozen=True)
class _Run:
    runs: int
    perf: PerfOutput
    latency: LatencyStats
    latency_note: str
    energy_mj: float | None
    energy_note: str


def parse_run_output(text: str) -> RunOutput:
    """Split the script's output; raises ValueError when a marker is missing."""
    lines = text.replace("\r\n", "\n").split("\n")
    markers = ("ADACOMP_STDOUT", "ADACOMP_STDERR", "ADACOMP_RESULT", "ADACOMP_END")
    try:
        index = {m: lines.index(m) for m in markers}
        header = next(line for line in lines if line.startswith("ADACOMP_GAUGE "))
        rc_line = next(line for line in lines if line.startswith("ADACOMP_RC "))
        exit_code = int(rc_line.split()[1])
    except (ValueError, StopIteration, IndexError):
        raise ValueError("measure script output is incomplete") from None
    _, gauge, *status = header.split()
    samples: dict[str, list[GaugeSample]] = {"I": [], "B": []}
    for line in lines[: lines.index(rc_line)]:
        parts = line.split()
        if len(parts) == 4 and parts[0] in samples:
            with contextlib.suppress(ValueError):
                samples[parts[0]].append(GaugeSample(float(parts[1]), float(parts[2]), float(parts[3])))

    def section(start: str, end: str) -> str:
        return "\n".join(lines[index[start] + 1 : index[end]]).strip("\n")

    return RunOutput(
        gauge=gauge,
        battery_status=" ".join(status) or "unknown",
        idle=tuple(samples["I"]),
        busy=tuple(samples["B"]),
        exit_code=exit_code,
        stdout=section("ADACOMP_STDOUT", "ADACOMP_STDERR"),
        stderr=section("ADACOMP_STDERR", "ADACOMP_RESULT"),
        result_file=section("ADACOMP_RESULT", "ADACOMP_END"),
    )


def energy_per_inference(
    idle: Sequence[GaugeSample],
    busy: Sequence[GaugeSample],
    battery_status: str,
    run_time_s: float,
    inferences: int,
) -> tuple[float | None, str]:
    """mJ per inference from fuel-gauge samples, or None with the reason; the note says how it was made."""
    status = battery_status.strip().lower()
    if status not in ("discharging", "unknown"):
        return None, (
            f"energy unknown: battery status {battery_status!r}, so the fuel gauge reads current net of the "
            "charger (measure with USB power off: adb over Wi-Fi, or a USB power meter)"
        )
    if not idle or len(busy) < MIN_BUSY_SAMPLES:
        return None, (
            f"energy unknown: {len(busy)} fuel-gauge sample(s) during the run, {len(idle)} idle; "
            f"the gauge needs longer runs (raise min_runs)"
        )
    currents = [s.current_ua for s in (*idle, *busy)]
    if any(c > 0 for c in currents) and any(c < 0 for c in currents):
        return (
            None,
            "energy unknown: the fuel-gauge current changed sign (the battery charged part of the time)",
        )
    notes = []
    current_scale = voltage_scale = 1.0
    if all(abs(c) < 10_000 for c in currents):  # < 10 mA in uA is not a running phone: the gauge says mA
        current_scale = 1000.0
        notes.append("current_now read as mA")
    if all(abs(s.voltage_uv) < 100_000 for s in (*idle, *busy)):  # likewise mV instead of uV
        voltage_scale = 1000.0
        notes.append("voltage_now read as mV")

    def watts(samples: Sequence[GaugeSample]) -> float:
        return statistics.fmean(
            abs(s.current_ua) * current_scale * abs(s.voltage_uv) * voltage_scale * 1e-12 for s in samples
        )

    p_idle, p_busy = watts(idle), watts(busy)
    if p_busy <= p_idle:
        return None, f"energy unknown: power while running ({p_busy:.3f} W) not above idle ({p_idle:.3f} W)"
    energy_mj = (p_busy - p_idle) * run_time_s * 1000.0 / inferences
    notes.insert(
        0,
        f"energy from the battery fuel gauge: ({p_busy:.3f} W running - {p_idle:.3f} W idle) "
        f"x {run_time_s:.3f} s / {inferences} inferences, whole phone, battery {status}, "
        f"{len(busy)} samples over {busy[-1].uptime_s - busy[0].uptime_s:.2f} s",
    )
    if status == "unknown":
        notes.append("battery status unreadable: charging could not be ruled out")
    return energy_mj, "; ".join(notes)


def perf_test_args(runs: int, threads: int, free_dims: Sequence[str] = ()) -> list[str]:
    """Flags of onnxruntime_perf_test (onnxruntime/test/perftest/command_args_parser.cc, README).

    -e cpu: CPU execution provider; -m times -r N: N timed runs (recent versions infer the mode from
    -r, older ones need -m); -x: intra-op threads; -I: random inputs, no test_data_set folders;
    -s: print P50/P90/... (also when a result file is given).
    """
    return ["-e", "cpu", "-m", "times", "-r", str(runs), "-x", str(threads), "-I", "-s", *free_dims]


def _reason(stderr: bytes | str, stdout: bytes | str = b"") -> str:
    """The last line of stderr (or stdout), led by adb's own 'error:' line when that is elsewhere."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    if not text.strip():
        text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output"
    error = next((line for line in lines if line.lower().startswith(("error:", "adb: "))), None)
    return lines[-1] if error is None or error == lines[-1] else f"{error} ... {lines[-1]}"


def _hint(reason: str) -> str:
    return next((f" ({hint})" for key, hint in _STATE_HINTS.items() if key in reason.lower()), "")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AdbDevice(Device):
    kind = "adb"

    def __init__(
        self,
        name: str,
        device_class: str,
        *,
        serial: str | None,
        benchmark_binary: str | Path,
        adb: str = "adb",
        remote_dir: str = "/data/local/tmp/adacomp",
        timeout_s: float = 300.0,
        energy: bool | FuelGauge = True,
        libraries: Sequence[str | Path] = (),  # shared libraries the binary needs (libonnxruntime.so)
    ) -> None:
        super().__init__(name, device_class)
        if timeout_s <= 0:
            raise DeviceError(f"device {name!r}: timeout_s must be > 0, got {timeout_s!r}")
        if not remote_dir.startswith("/"):
            raise DeviceError(
                f"device {name!r}: remote_dir must be an absolute path on the phone, got {remote_dir!r}"
            )
        self.serial = serial
        self.benchmark_binary = Path(benchmark_binary)
        self.libraries = tuple(Path(p) for p in libraries)
        self.adb = adb
        self.remote_dir = remote_dir.rstrip("/")
        self.timeout_s = timeout_s
        self.gauge: FuelGauge | None = FuelGauge() if energy is True else (energy or None)
        self._digest: tuple[tuple[tuple[str, int, int], ...], str] | None = None

    # -- adb plumbing -------------------------------------------------------------------------
    @property
    def _who(self) -> str:
        return f"device {self.name!r} (adb {self.serial or 'default device'})"

    def _adb(self, *args: str, timeout: float) -> str:
        """Run adb with explicit argv; every failure is a one-line DeviceError."""
        argv = [self.adb, *(("-s", self.serial) if self.serial else ()), *args]
        try:
            # Own process group, so a timeout can stop everything adb started (and the pipes close).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise DeviceError(f"{self._who}: adb executable {self.adb!r} not found") from None
        except OSError as exc:
            raise DeviceError(f"{self._who}: cannot run adb {self.adb!r}: {exc}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise AdbTimeout(f"{self._who}: adb {args[0]} timed out after {timeout:g} s") from None
        if proc.returncode != 0:
            reason = _reason(err, out)
            raise DeviceError(
                f"{self._who}: adb {args[0]} failed (exit {proc.returncode}): {reason}{_hint(reason)}"
            )
        return out.decode(errors="replace")

    def _shell(self, command: str, timeout: float | None = None) -> str:
        # adb joins its arguments into one command line for the phone's shell: quote every path.
        return self._adb("shell", command, timeout=self.timeout_s if timeout is None else timeout)

    # -- Device -------------------------------------------------------------------------------
    def health(self) -> Health:
        if not self.benchmark_binary.is_file():
            return Health(
                False, f"{self._who}: benchmark binary {str(self.benchmark_binary)!r} does not exist"
            )
        try:
            state = self._adb("get-state", timeout=15).strip()
        except DeviceError as exc:
            return Health(False, str(exc))
        if state != "device":
            return Health(False, f"{self._who}: state {state!r}{_hint(state)}")
        return Health(True, f"{self._who}: device; {self.runtime()}")

    def runtime(self, threads: int | None = None) -> str:
        """e.g. "onnxruntime_perf_test 1a2b3c4d5e6f (android, cpu EP, 1 thread)"; the hash names the build."""
        try:
            name = f"onnxruntime_perf_test {self._binary_digest()[:12]}"
        except DeviceError:
            name = "onnxruntime_perf_test"
        if threads is None:
            return f"{name} (android, cpu EP)"
        return f"{name} (android, cpu EP, {threads} thread{'s' if threads > 1 else ''})"

    def measure(self, model: OnnxModel, settings: MeasureSettings) -> Measurement:
        proto = model.proto()  # refuse non-ONNX before touching the phone
        paths = self._sync(model)
        free_dims = self._free_dim_args(proto, settings.batch_size)
        gauge = self.gauge
        unplugged = False
        try:
            if gauge is not None and gauge.unplug:
                unplugged = True  # set first: a reset follows every attempt, even a timed-out one
                self._shell("dumpsys battery unplug", timeout=30)
            first = self._benchmark(paths, free_dims, settings, settings.min_runs)
            final, second_pass = first, []
            if first.latency.cv > settings.target_cv and settings.max_runs > settings.min_runs:
                affordable = int(settings.max_seconds * 1000.0 / max(first.latency.mean_ms, 1e-3))
                runs = min(settings.max_runs, affordable)
                if runs > settings.min_runs:
                    second_pass.append(
                        f"second pass of {runs} runs (cv {first.latency.cv:.1%} after {settings.min_runs})"
                    )
                    final = self._benchmark(paths, free_dims, settings, runs)
        finally:
            if unplugged:
                self._restore_battery()
        if final.latency.cv > settings.max_cv:
            raise DeviceError(
                f"{self._who}: timing too noisy (cv {final.latency.cv:.1%} > max_cv {settings.max_cv:.0%} "
                f"after {final.runs} runs); is the phone thermally throttled or busy?"
            )
        notes = [
            final.latency_note,
            f"{final.runs} timed runs after perf_test's single warm-up run",
            *second_pass,
            *([f"pinned to cores {list(settings.cores)} with taskset"] if settings.cores else []),
            "peak memory is perf_test's peak working set (runtime included)",
            final.energy_note,
        ]
        peak = final.perf.peak_working_set_bytes
        return Measurement(
            device=self.name,
            device_class=self.device_class,
            runtime=self.runtime(settings.intra_op_threads),
            source="measured",
            latency=final.latency,
            energy_mj=final.energy_mj,
            peak_memory_mb=None if peak is None else round(peak / 2**20, 3),
            storage_bytes=model.size,
            model_hash=model.sha256,
            settings=settings.key(),
            notes="; ".join(notes),
        )

    # -- steps --------------------------------------------------------------------------------
    def _binary_digest(self) -> str:
        """Content hash of the binary and its libraries, recomputed only when a file changes."""
        files = (self.benchmark_binary, *self.libraries)
        try:
            key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        except OSError as exc:
            raise DeviceError(f"{self._who}: benchmark file missing: {exc}") from None
        if self._digest is None or self._digest[0] != key:
            combined = hashlib.sha256("".join(_sha256_file(p) for p in files).encode()).hexdigest()
            self._digest = (key, combined)
        return self._digest[1]

    def _sync(self, model: OnnxModel) -> dict[str, str]:
        """Push what the phone lacks (content-addressed), and return the remote paths."""
        root = self.remote_dir
        bin_dir = f"{root}/bin/{self._binary_digest()[:16]}"
        script = MEASURE_SCRIPT.encode()
        paths = {
            "model": f"{root}/models/{model.sha256}.onnx",
            "binary": f"{bin_dir}/{self.benchmark_binary.name}",
            "script": f"{root}/scripts/measure-{hashlib.sha256(script).hexdigest()[:16]}.sh",
            "run": f"{root}/run",
        }
        wanted: dict[str, Path | bytes] = {
            paths["model"]: model.data,
            paths["binary"]: self.benchmark_binary,
            paths["script"]: script,
            **{f"{bin_dir}/{lib.name}": lib for lib in self.libraries},
        }
        q = shlex.quote
        dirs = " ".join(q(d) for d in (f"{root}/models", bin_dir, f"{root}/scripts"))
        listing = self._shell(
            f"mkdir -p {dirs} && {{ ls -d {' '.join(q(p) for p in wanted)} 2>/dev/null; true; }}"
        )
        present = {line.strip() for line in listing.splitlines()}
        missing = [remote for remote in wanted if remote not in present]
        if not missing:
            return paths
        with tempfile.TemporaryDirectory(prefix="adacomp-adb-") as tmp:
            for index, remote in enumerate(missing):
                source = wanted[remote]
                if isinstance(source, bytes):
                    local = Path(tmp) / f"push-{index}"
                    local.write_bytes(source)
                    source = local
                self._adb("push", str(source), remote + ".part", timeout=self.timeout_s)
        finish = [f"mv -f {q(r + '.part')} {q(r)}" for r in missing]
        if paths["binary"] in missing:
            finish.insert(0, f"chmod 755 {q(paths['binary'] + '.part')}")
        self._shell(" && ".join(finish))
        return paths

    @staticmethod
    def _free_dim_args(proto: onnx.ModelProto, batch_size: int) -> list[str]:
        """`-f name:batch` for symbolic batch dimensions (perf_test's -I treats free dimensions as 1)."""
        initializers = {init.name for init in proto.graph.initializer}
        names: dict[str, None] = {}
        for graph_input in proto.graph.input:
            dims = graph_input.type.tensor_type.shape.dim
            if graph_input.name not in initializers and dims and dims[0].dim_param:
                names[dims[0].dim_param] = None
        return [arg for name in names for arg in ("-f", f"{name}:{batch_size}")]

    def _benchmark(
        self, paths: dict[str, str], free_dims: list[str], settings: MeasureSettings, runs: int
    ) -> _Run:
        gauge = self.gauge
        idle_samples = max(1, round(gauge.idle_s / gauge.interval_s)) if gauge else 0
        mask = f"{sum(1 << c for c in settings.cores):x}" if settings.cores else ""
        argv = [
            "sh",
            paths["script"],
            paths["run"],
            gauge.path if gauge else "",
            f"{gauge.interval_s:g}" if gauge else "1",
            str(idle_samples),
            mask,
            paths["binary"],
            *perf_test_args(runs, settings.intra_op_threads, free_dims),
            paths["model"],
            RESULT_FILE,
        ]
        try:
            text = self._shell(" ".join(shlex.quote(a) for a in argv))
        except AdbTimeout:
            self._kill_remote(paths["run"])
            raise
        try:
            out = parse_run_output(text)
        except ValueError:
            raise DeviceError(f"{self._who}: measure script failed: {_reason(text)}") from None
        if out.exit_code != 0:
            reason = _reason(out.stderr, out.stdout)
            # ONNX Runtime's own error (its status prefix): the phone works, this model does not load or run
            refused = ModelRefused if ORT_ERROR in f"{out.stderr}{out.stdout}" else DeviceError
            raise refused(f"{self._who}: onnxruntime_perf_test exited with {out.exit_code}: {reason}")
        try:
            perf = parse_perf_output(out.stdout)
            samples = parse_result_file(out.result_file, perf) if out.result_file.strip() else None
            latency, latency_note = latency_stats(perf, samples)
        except PerfOutputError as exc:
            raise DeviceError(f"{self._who}: {exc}") from None
        if gauge is None:
            energy, energy_note = None, "energy not measured (disabled)"
        elif out.gauge != "ok":
            energy, energy_note = None, f"energy unknown: {gauge.path}/current_now, voltage_now not readable"
        else:
            run_time = perf.run_time_s or perf.total_time_s or perf.mean_ms * perf.requests / 1000.0
            energy, energy_note = energy_per_inference(
                out.idle, out.busy, out.battery_status, run_time, perf.requests
            )
        return _Run(perf.requests, perf, latency, latency_note, energy, energy_note)

    def _kill_remote(self, run_dir: str) -> None:
        """Killing local adb leaves the benchmark running on the phone: stop it by its pid file."""
        pid_file = shlex.quote(f"{run_dir}/bench.pid")
        try:
            self._shell(f"if [ -f {pid_file} ]; then kill $(cat {pid_file}); fi; true", timeout=15)
        except DeviceError as exc:
            log.warning("could not stop the benchmark on the phone: %s", exc)

    def _restore_battery(self) -> None:
        try:
            self._shell("dumpsys battery reset", timeout=30)
        except DeviceError as exc:
            log.warning("%s; run 'adb shell dumpsys battery reset' by hand", exc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)
