"""What a model costs on a device: emulated, host, remote-agent and Android devices.

Knows nothing of Tune or MLflow. `Farm` is the entry point: devices by name, leases, retries,
quarantine, class fallback and the Parquet measurement store.
"""

from adacomp.device_farm.config import FarmConfig, default_farm_config, load_farm_config
from adacomp.device_farm.devices._base import Device, DeviceError, Health
from adacomp.device_farm.farm import DeviceStatus, Farm, build_device, open_farm
from adacomp.device_farm.leases import DeviceBusy
from adacomp.device_farm.measurement import LatencyStats, Measurement
from adacomp.device_farm.model import OnnxModel
from adacomp.device_farm.settings import MeasureSettings
from adacomp.device_farm.store import MeasurementStore

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
