"""How to measure: warm-up, stopping rule, threads, pinning, limits. Frozen, validated, hashable."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from adacomp.yaml_config import ConfigModel


class MeasureSettings(ConfigModel):
    """Settings of one measurement; part of the store's cache key."""

    warmup_runs: int = Field(5, ge=0, le=1000)
    min_runs: int = Field(20, ge=1, le=100_000)
    max_runs: int = Field(200, ge=1, le=100_000)
    # Stop once the coefficient of variation of the timed runs is below this.
    target_cv: float = Field(0.05, gt=0, le=1)
    # A measurement whose cv stays above this after max_runs is refused as noise.
    max_cv: float = Field(0.25, gt=0, le=10)
    repeats_when_noisy: int = Field(2, ge=0, le=10)
    max_seconds: float = Field(60.0, gt=0, le=24 * 3600)  # timed runs stop here even if not yet stable
    batch_size: int = Field(1, ge=1, le=4096)
    intra_op_threads: int = Field(1, ge=1, le=1024)
    # Cores the measuring process is pinned to (Linux); None leaves the OS to choose.
    cores: tuple[Annotated[int, Field(ge=0, le=4095)], ...] | None = None

    @model_validator(mode="after")
    def _runs_in_order(self) -> MeasureSettings:
        if self.max_runs < self.min_runs:
            raise ValueError(f"max_runs ({self.max_runs}) must be >= min_runs ({self.min_runs})")
        return self

    def key(self) -> dict[str, Any]:
        """The fields that change the result (what the store keys on)."""
        return {"batch_size": self.batch_size, "intra_op_threads": self.intra_op_threads}
