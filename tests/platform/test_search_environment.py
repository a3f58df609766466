"""A search's process-wide flags are scoped to it: set inside, the caller's values after."""

from __future__ import annotations

import os

import pytest

from adacomp.platform.search.environment import (
    MLFLOW_HTTP_FLAGS,
    TUNE_FLAGS,
    scoped_environment,
    search_flags,
)


def test_flags_are_set_inside_and_the_callers_environment_is_back_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")  # the caller's own choice
    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0")
    with scoped_environment(TUNE_FLAGS):
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "0"  # a preference: the caller's kept
        assert os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] == "1"  # forced: failed trials need it
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "0"
    assert os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] == "0"


def test_the_environment_is_back_after_a_failing_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", raising=False)
    with pytest.raises(RuntimeError), scoped_environment(TUNE_FLAGS):
        raise RuntimeError("a trial blew up")
    assert "TUNE_DISABLE_STRICT_METRIC_CHECKING" not in os.environ


def test_mlflow_http_flags_only_for_a_tracking_server() -> None:
    assert not set(MLFLOW_HTTP_FLAGS) & set(search_flags("sqlite:///runs/mlflow.db"))
    assert set(MLFLOW_HTTP_FLAGS) <= set(search_flags("http://127.0.0.1:5000"))
