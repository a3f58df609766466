"""Built-in tasks by name, and users' tasks from `package.module:function` entry points."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache

from adacomp.tasks._base import Task, TaskError

__all__ = ["builtin_task_names", "load_task", "register_task"]

_FACTORIES: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task], *, replace: bool = False) -> None:
    """Make `factory` loadable as `name` (e.g. `--task name`)."""
    if not name or ":" in name:
        raise TaskError(f"task name {name!r}; expected a non-empty name without ':'")
    if not callable(factory):
        raise TaskError(f"factory for task {name!r} is a {type(factory).__name__}; expected a callable")
    if name in _FACTORIES and not replace:
        raise TaskError(f"task {name!r} is already registered; pass replace=True to override")
    _FACTORIES[name] = factory
    _built.cache_clear()


def builtin_task_names() -> list[str]:
    """Names `load_task` accepts without a `module:function`, sorted."""
    return sorted(_FACTORIES)


@lru_cache(maxsize=8)
def _built(name: str) -> Task:
    """Built-in tasks generate or load their data once per process."""
    return _checked(name, _FACTORIES[name]())


def load_task(spec: str) -> Task:
    """A registered task by name, or `package.module:function` returning a Task."""
    if spec in _FACTORIES:
        return _built(spec)
    if ":" not in spec:
        known = ", ".join(builtin_task_names())
        raise TaskError(f"unknown task {spec!r}; built-in tasks: {known}; or give package.module:function")
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise TaskError(f"task {spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a user's module can fail on import in any way; say which
        raise TaskError(
            f"task {spec!r}: cannot import module {module_name!r} ({type(error).__name__}: {error})"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TaskError(f"task {spec!r}: module {module_name!r} has no function {attribute!r}")
    return _checked(spec, factory())


def _checked(spec: str, task: object) -> Task:
    """Factories are user code: a wrong return type fails here, not deep inside a job."""
    if not isinstance(task, Task):
        raise TaskError(f"task {spec!r} returned {type(task).__name__}; expected an adacomp.tasks.Task")
    return task
