"""A new sqlite store is a copy of one migrated once: the same store MLflow would have made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from adacomp.platform.results.tracking import seed_new_sqlite_store


def _schema(path: Path) -> tuple[list[tuple[str, list[str]]], list[tuple[str]]]:
    """Tables and indexes, each definition's lines sorted: MLflow's own migrations write a
    table's constraints in an order that changes from one process to the next (a set inside
    alembic's batch mode), which is the same schema."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
        version = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return [(name, sorted(line.strip(" ,\t") for line in sql.splitlines())) for name, sql in rows], version


def _default_experiment(path: Path) -> tuple[str, str]:
    client = MlflowClient(f"sqlite:///{path}")
    default = client.get_experiment("0")
    return default.name, default.artifact_location


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_seeded_store_is_the_store_mlflow_makes(tmp_path: Path, cwd: Path) -> None:
    own, seeded = tmp_path / "own.db", tmp_path / "seeded.db"
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow creates and migrates it
    seed_new_sqlite_store(f"sqlite:///{seeded}", cache_dir=tmp_path / "cache")

    assert _schema(seeded) == _schema(own)
    assert _default_experiment(seeded) == _default_experiment(own) == ("Default", str(cwd / "mlruns" / "0"))
    client = MlflowClient(f"sqlite:///{seeded}")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "accuracy", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"accuracy": 0.5}


def test_the_template_is_built_once_and_each_copy_is_independent(tmp_path: Path, cwd: Path) -> None:
    cache = tmp_path / "cache"
    seed_new_sqlite_store(f"sqlite:///{tmp_path / 'a.db'}", cache_dir=cache)
    (template,) = (cache / "mlflow").iterdir()
    built = template.stat().st_mtime_ns
    MlflowClient(f"sqlite:///{tmp_path / 'a.db'}").create_experiment("only-in-a")

    seed_new_sqlite_store(f"sqlite:///{tmp_path / 'b.db'}", cache_dir=cache)

    assert template.stat().st_mtime_ns == built
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'b.db'}").search_experiments()] == [
        "Default"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db", "b.db", "cache", "work"]  # no scratch left


def test_an_existing_store_and_other_stores_are_left_alone(tmp_path: Path, cwd: Path) -> None:
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"someone's data")
    seed_new_sqlite_store(f"sqlite:///{existing}", cache_dir=tmp_path / "cache")
    assert existing.read_bytes() == b"someone's data"

    seed_new_sqlite_store("http://127.0.0.1:5000", cache_dir=tmp_path / "cache")
    seed_new_sqlite_store(f"sqlite:///{tmp_path / 'missing-dir' / 'mlflow.db'}", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_leaves_the_store_to_mlflow(tmp_path: Path, cwd: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    target = tmp_path / "mlflow.db"

    seed_new_sqlite_store(f"sqlite:///{target}", cache_dir=blocked)

    assert not target.exists()
    assert [e.name for e in MlflowClient(f"sqlite:///{target}").search_experiments()] == ["Default"]
