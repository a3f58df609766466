"""Ray for a search: started here (with the host's measurement cores kept free of training) or
joined (a cluster named by `address` or RAY_ADDRESS)."""

from __future__ import annotations

import os
from typing import Any

from adacomp.device_farm import FarmConfig
from adacomp.device_farm.config import HostSpec
from adacomp.platform.cluster import join


def init_ray(address: str | None, farm: FarmConfig) -> tuple[bool, Any]:
    """Starts (True) or joins (False) Ray; returns the host core reservation when local."""
    import ray

    from adacomp.platform.search.ray_farm import init_local_ray

    if ray.is_initialized():
        return False, None
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        join(address)
        return True, None
    uses_host = any(isinstance(spec, HostSpec) for spec in farm.devices)
    reservation = init_local_ray(
        farm,
        measurement_cores=1 if uses_host else 0,
        log_to_driver=False,
        include_dashboard=False,
        configure_logging=False,
    )
    return True, reservation
