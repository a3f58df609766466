"""The one job-directory helper every job keeps its state through."""

from __future__ import annotations

from pathlib import Path

import pytest

from adacomp.errors import AdacompError
from adacomp.platform.results.job_dir import JobDir


def test_a_new_job_starts_and_its_state_is_written_whole(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job", "state.json", "search 'x'")
    assert job.open(resume=False) == {}
    job.save({"identity": {"task": "digits"}, "run": "abc"})
    assert job.load() == {"identity": {"task": "digits"}, "run": "abc"}
    assert [p.name for p in job.path.iterdir()] == ["state.json"]  # no temp file left behind


def test_an_existing_job_is_refused_unless_resumed(tmp_path: Path) -> None:
    job = JobDir(tmp_path, "state.json", "search 'x'")
    job.save({"identity": {"task": "digits"}})
    with pytest.raises(
        AdacompError, match=r"output: search 'x' already exists in .* \(3 trials\); .*resume=True"
    ):
        job.open(resume=False, existing=lambda: " (3 trials)")
    assert job.open(resume=True, identity={"task": "digits"}) == {"identity": {"task": "digits"}}


def test_a_resume_with_other_settings_names_the_field_that_changed(tmp_path: Path) -> None:
    job = JobDir(tmp_path, "state.json", "search 'x'")
    job.save({"identity": {"task": "digits", "seed": 0}})
    with pytest.raises(AdacompError, match=r"^seed: differs from the search 'x'"):
        job.open(resume=True, identity={"task": "digits", "seed": 1})
    with pytest.raises(AdacompError, match=r"^changed: seed$"):
        job.open(
            resume=True, identity={"task": "digits", "seed": 1}, changed=lambda f: "changed: " + ",".join(f)
        )
    assert job.load() == {"identity": {"task": "digits", "seed": 0}}  # nothing written by a refusal
