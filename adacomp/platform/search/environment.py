"""The process-wide flags a search needs from Tune and MLflow, set for the search only.

Tune and MLflow read these from the environment, so they cannot be passed as arguments; a
search sets them on entry and gives the caller's values back on exit (a notebook that runs a
search keeps its own settings). A value the caller already set is kept where the search only
prefers a default; the strict-metric flag is forced, because a failed trial reports no
objective values and Tune would refuse it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

# name -> (value, forced): a flag not forced keeps the caller's value when there is one.
TUNE_FLAGS: Mapping[str, tuple[str, bool]] = {
    "RAY_AIR_NEW_OUTPUT": ("0", False),  # with verbose=0 Tune prints nothing; our progress view shows
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": ("1", True),  # a failed trial reports no objective values
    # The ledger and MLflow are the record. Of Tune's own loggers only the JSON one stays (Tune's
    # result grid reads it); TensorBoard complains about the nested plan in results.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": ("1", False),
}
# MLflow's client retries a call for minutes; a search against a server buffers instead.
MLFLOW_HTTP_FLAGS: Mapping[str, tuple[str, bool]] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": ("2", False),
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": ("1", False),
    "MLFLOW_HTTP_REQUEST_TIMEOUT": ("30", False),
}


def search_flags(tracking_uri: str) -> dict[str, tuple[str, bool]]:
    """The flags of one search: Tune's always, MLflow's HTTP ones for a tracking server."""
    flags = dict(TUNE_FLAGS)
    if tracking_uri.startswith(("http://", "https://")):
        flags.update(MLFLOW_HTTP_FLAGS)
    return flags


@contextmanager
def scoped_environment(flags: Mapping[str, tuple[str, bool]]) -> Iterator[None]:
    """Sets `flags` for the duration of the block; the environment is as it was afterwards."""
    before = {name: os.environ.get(name) for name in flags}
    for name, (value, forced) in flags.items():
        if forced or name not in os.environ:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, earlier in before.items():
            if earlier is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = earlier
