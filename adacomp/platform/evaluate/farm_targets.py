"""The farm a search measures on: the config's farm (or the built-in one) cut to its targets.

Below the search and the supernet's training, which both refuse an unknown target before any
work with it.
"""

from __future__ import annotations

from adacomp.device_farm import FarmConfig
from adacomp.device_farm.config import default_farm_config, load_farm_config
from adacomp.errors import AdacompError
from adacomp.platform.search_config import SearchConfig


def farm_for_targets(config: SearchConfig) -> FarmConfig:
    farm = load_farm_config(config.farm) if config.farm is not None else default_farm_config()
    names = {spec.name for spec in farm.devices}
    for target in config.targets:
        if target not in names:
            where = f"farm {config.farm}" if config.farm else "the default farm"
            raise AdacompError(f"targets: unknown device {target!r}; {where} has: {', '.join(sorted(names))}")
    return farm.model_copy(update={"devices": tuple(s for s in farm.devices if s.name in config.targets)})
