"""What a model costs on a device: emulated, host, remote-agent and Android devices.

Knows nothing of Tune or MLflow. `Farm` is the entry point: devices by name, leases, retries,
quarantine, class fallback and the Parquet measurement store.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adacomp.device_farm.config import FarmConfig, default_farm_config, load_farm_config
    from adacomp.device_farm.devices._base import Device, DeviceError, Health
    from adacomp.device_farm.farm import DeviceStatus, Farm, build_device, open_farm
    from adacomp.device_farm.leases import DeviceBusy
    from adacomp.device_farm.measurement import LatencyStats, Measurement
    from adacomp.device_farm.model import OnnxModel
    from adacomp.device_farm.settings import MeasureSettings
    from adacomp.device_farm.store import MeasurementStore

_EXPORTS = {
    "Device": "adacomp.device_farm.devices._base",
    "DeviceBusy": "adacomp.device_farm.leases",
    "DeviceError": "adacomp.device_farm.devices._base",
    "DeviceStatus": "adacomp.device_farm.farm",
    "Farm": "adacomp.device_farm.farm",
    "FarmConfig": "adacomp.device_farm.config",
    "Health": "adacomp.device_farm.devices._base",
    "LatencyStats": "adacomp.device_farm.measurement",
    "MeasureSettings": "adacomp.device_farm.settings",
    "Measurement": "adacomp.device_farm.measurement",
    "MeasurementStore": "adacomp.device_farm.store",
    "OnnxModel": "adacomp.device_farm.model",
    "build_device": "adacomp.device_farm.farm",
    "default_farm_config": "adacomp.device_farm.config",
    "load_farm_config": "adacomp.device_farm.config",
    "open_farm": "adacomp.device_farm.farm",
}


def __getattr__(name: str) -> Any:
    """Import an export on first use: the host's timing worker imports one small module of this
    package and must not pay for onnx, pydantic and pyarrow before it times anything."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Device",
    "DeviceBusy",
    "DeviceError",
    "DeviceStatus",
    "Farm",
    "FarmConfig",
    "Health",
    "LatencyStats",
    "MeasureSettings",
    "Measurement",
    "MeasurementStore",
    "OnnxModel",
    "build_device",
    "default_farm_config",
    "load_farm_config",
    "open_farm",
]
