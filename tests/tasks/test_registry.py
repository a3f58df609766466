from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from adacomp.tasks import Task, TaskError, builtin_task_names, load_task, register_task, registry

FIXTURE = "tests.tasks.custom_task_fixture"


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry._built.cache_clear()
    yield
    registry._built.cache_clear()


def test_builtin_names_and_caching() -> None:
    assert {"digits", "mnist1d", "mobilenet_digits"} <= set(builtin_task_names())
    assert load_task("digits") is load_task("digits")  # data is built once per process


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nope",
            "unknown task 'nope'; built-in tasks: digits, mnist1d, mobilenet_digits, shapes_resnet; or give",
        ),
        ("not_a_module_xyz:f", "cannot import module 'not_a_module_xyz' \\(ModuleNotFoundError"),
        (f"{FIXTURE}:missing", f"module '{FIXTURE}' has no function 'missing'"),
        (f"{FIXTURE}:NOT_CALLABLE", "has no function 'NOT_CALLABLE'"),
        (f"{FIXTURE}:not_a_task", "returned int; expected an adacomp.tasks.Task"),
        (":make_task", "expected package.module:function"),
        (f"{FIXTURE}:", "expected package.module:function"),
    ],
)
def test_load_task_errors_are_one_line_task_errors(spec: str, message: str) -> None:
    with pytest.raises(TaskError, match=message) as caught:
        load_task(spec)
    assert "\n" not in str(caught.value)


def test_a_module_failing_on_import_is_a_task_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_task_module.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TaskError, match=r"cannot import module 'broken_task_module' \(RuntimeError: boom\)"):
        load_task("broken_task_module:make")


def test_module_function_tasks_load() -> None:
    task = load_task(f"{FIXTURE}:make_task")
    assert isinstance(task, Task) and task.name == "custom digits/v1"
    assert task.train_budget.steps == 5


@pytest.mark.usefixtures("clean_registry")
def test_register_task_refuses_duplicates_unless_replace() -> None:
    def small() -> Task:
        return replace(load_task("digits"), name="small")

    register_task("small", small)
    assert load_task("small").name == "small"
    assert "small" in builtin_task_names()
    with pytest.raises(TaskError, match="task 'small' is already registered; pass replace=True"):
        register_task("small", small)
    register_task("small", lambda: replace(small(), description="v2"), replace=True)
    assert load_task("small").description == "v2"  # replacing drops the cached task


@pytest.mark.usefixtures("clean_registry")
def test_register_task_validates_its_arguments() -> None:
    with pytest.raises(TaskError, match="task name 'a:b'"):
        register_task("a:b", lambda: load_task("digits"))
    with pytest.raises(TaskError, match="factory for task 'x' is a str; expected a callable"):
        register_task("x", "digits")  # type: ignore[arg-type]
    register_task("liar", lambda: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TaskError, match="task 'liar' returned int"):
        load_task("liar")
