"""The measurement store: every measurement (and every failure) as rows in Parquet files.

Append-only: each write is a new part file written to a temporary name, flushed to disk and
renamed into place (the directory flushed after), so a crash never corrupts or loses what was
written before, and several processes can write at once. A part that is unreadable anyway (a
disk that lied, a copy cut short) is moved aside to `quarantine/` with one warning, never
deleted, and the store goes on with the others. An identical request (model hash, device,
runtime settings, and the identity of the device that measured it: identity.py) is served from
the store unless a fresh measurement is asked for. The same rows are what the emulators are
calibrated on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from adacomp.atomic import atomic_path
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.errors import first_line

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"

SCHEMA = pa.schema(
    [
        ("status", pa.string()),  # "ok" or "failed"
        ("error", pa.string()),
        ("device", pa.string()),
        ("device_class", pa.string()),
        ("runtime", pa.string()),
        ("source", pa.string()),
        ("model_hash", pa.string()),
        ("settings", pa.string()),  # canonical JSON of the settings key
        ("latency_median_ms", pa.float64()),
        ("latency_p90_ms", pa.float64()),
        ("latency_mean_ms", pa.float64()),
        ("latency_std_ms", pa.float64()),
        ("latency_runs", pa.int64()),
        ("energy_mj", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("storage_bytes", pa.int64()),
        ("timestamp", pa.float64()),
        ("notes", pa.string()),
        ("identity", pa.string()),  # what measured it (identity.py); null in parts written before
    ]
)


def settings_key(settings: Mapping[str, Any]) -> str:
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))


def _row(measurement: Measurement) -> dict[str, Any]:
    lat = measurement.latency
    return {
        "status": "ok",
        "error": None,
        "device": measurement.device,
        "device_class": measurement.device_class,
        "runtime": measurement.runtime,
        "source": measurement.source,
        "model_hash": measurement.model_hash,
        "settings": settings_key(measurement.settings),
        "latency_median_ms": lat.median_ms,
        "latency_p90_ms": lat.p90_ms,
        "latency_mean_ms": lat.mean_ms,
        "latency_std_ms": lat.std_ms,
        "latency_runs": lat.runs,
        "energy_mj": measurement.energy_mj,
        "peak_memory_mb": measurement.peak_memory_mb,
        "storage_bytes": measurement.storage_bytes,
        "timestamp": measurement.timestamp,
        "notes": measurement.notes,
        "identity": measurement.identity,
    }


def measurement_from_row(row: Mapping[str, Any]) -> Measurement:
    return Measurement(
        device=row["device"],
        device_class=row["device_class"],
        runtime=row["runtime"],
        source=row["source"],
        latency=LatencyStats(
            median_ms=row["latency_median_ms"],
            p90_ms=row["latency_p90_ms"],
            mean_ms=row["latency_mean_ms"],
            std_ms=row["latency_std_ms"],
            runs=row["latency_runs"],
        ),
        energy_mj=row["energy_mj"],
        peak_memory_mb=row["peak_memory_mb"],
        storage_bytes=row["storage_bytes"],
        model_hash=row["model_hash"],
        settings=json.loads(row["settings"]),
        timestamp=row["timestamp"],
        notes=row["notes"] or "",
        identity=row.get("identity") or "",
    )


class MeasurementStore:
    """Parquet parts under `root`; an in-memory index of successful rows for cache lookups."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index: dict[tuple[str, str, str, str], Measurement] = {}
        for row in self.rows():
            if row["status"] == "ok":
                self._remember(measurement_from_row(row))

    def _remember(self, m: Measurement) -> None:
        key = (m.model_hash, m.device, settings_key(m.settings), m.identity)
        current = self._index.get(key)
        if current is None or m.timestamp >= current.timestamp:
            self._index[key] = m

    def lookup(
        self, model_hash: str, device: str, settings: Mapping[str, Any], identity: str = ""
    ) -> Measurement | None:
        """The latest measurement of this model on this device with these settings, taken by a
        device of this `identity`: another machine's (or an unknown one's) is never served."""
        with self._lock:
            return self._index.get((model_hash, device, settings_key(settings), identity))

    def add(self, measurement: Measurement) -> None:
        self._write([_row(measurement)])
        with self._lock:
            self._remember(measurement)

    def add_failure(
        self,
        device: str,
        device_class: str,
        model_hash: str,
        settings: Mapping[str, Any],
        error: str,
        identity: str = "",
    ) -> None:
        row: dict[str, Any] = {name: None for name in SCHEMA.names}
        row.update(
            status="failed",
            error=error,
            device=device,
            device_class=device_class,
            model_hash=model_hash,
            settings=settings_key(settings),
            timestamp=time.time(),
            identity=identity,
        )
        self._write([row])

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self._write_table(pa.Table.from_pylist(rows, schema=SCHEMA))

    def _write_table(self, table: pa.Table) -> Path:
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.root / name, durable=True) as temporary:  # survives a power cut
            pq.write_table(table, str(temporary))
        return self.root / name

    def parts(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet"))

    def _read_parts(self) -> tuple[list[Path], list[pa.Table]]:
        """Every readable part; an unreadable one is quarantined (one warning) and skipped."""
        read: list[Path] = []
        tables: list[pa.Table] = []
        for part in self.parts():
            try:
                tables.append(pq.read_table(part, schema=SCHEMA))
            except FileNotFoundError:
                continue  # compacted away by another process meanwhile
            except (pa.ArrowException, OSError, ValueError) as exc:
                self._quarantine(part, exc)
                continue
            read.append(part)
        return read, tables

    def _quarantine(self, part: Path, exc: BaseException) -> None:
        target = self.root / QUARANTINE / part.name
        try:
            target.parent.mkdir(exist_ok=True)
            os.replace(part, target)
        except FileNotFoundError:
            return  # another process quarantined it first
        except OSError as move_error:
            log.warning(
                "measurement store: unreadable part %s skipped (%s); could not move it aside: %s",
                part,
                first_line(exc),
                move_error.strerror,
            )
            return
        log.warning(
            "measurement store: unreadable part %s (%s) moved to %s; the other parts are used",
            part.name,
            first_line(exc),
            target.parent,
        )

    def table(self) -> pa.Table:
        _, tables = self._read_parts()
        if not tables:
            return SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.table().to_pylist()
        return rows

    def compact(self) -> Path | None:
        """Merge all readable parts into one (written first, old parts removed after): fewer
        files. An unreadable part is quarantined, not merged and not lost."""
        parts, tables = self._read_parts()
        if len(parts) < 2:
            return parts[0] if parts else None
        merged = self._write_table(pa.concat_tables(tables))
        for part in parts:
            part.unlink(missing_ok=True)
        return merged
