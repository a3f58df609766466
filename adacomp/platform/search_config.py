"""The search config: task, targets, objectives, constraints, usage weights, budgets, strategy.

One YAML file, validated at the boundary; an error names the file and the field. Metrics:
`accuracy` (ONNX accuracy on the test split, 0-1), `accuracy_drop` (points against the
uncompressed model), and per target device `latency` (ms), `energy` (mJ), `memory` (MiB);
`storage` (encoded bytes) is per model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from adacomp.device_farm.settings import MeasureSettings
from adacomp.yaml_config import ConfigModel, absolute, load_yaml_model

DeviceMetric = Literal["latency", "energy", "memory"]
ModelMetric = Literal["accuracy", "accuracy_drop", "storage"]
Metric = Literal["accuracy", "accuracy_drop", "storage", "latency", "energy", "memory"]
PER_DEVICE = {"latency", "energy", "memory"}
UNITS = {
    "accuracy": "",
    "accuracy_drop": "pt",
    "storage": "B",
    "latency": "ms",
    "energy": "mJ",
    "memory": "MiB",  # binary, like every size adacomp prints (table.py)
}


# Ranges: far beyond any sensible setting, far below what never ends or overflows. A bound a
# user meets is one line naming the field and the range.
MAX_TRIALS = 100_000
MAX_STEPS = 100_000_000
MAX_EPOCHS = 100_000.0
MAX_WEIGHT = 1e6
MAX_SECONDS = 7 * 24 * 3600.0
# A constraint's bound: storage in bytes reaches 1e12 (a terabyte); nothing needs more.
MAX_BOUND = 1e15

Fraction = Annotated[float, Field(gt=0, le=1)]
Hidden = Annotated[int, Field(ge=1, le=65_536)]


class _Frozen(ConfigModel):
    """Every section of the search config: see ConfigModel (frozen, finite, ranged, no bools)."""


class Objective(_Frozen):
    metric: Metric
    target: str | None = None  # the device, for per-device metrics
    direction: Literal["min", "max"] | None = None  # default: max for accuracy, min otherwise

    @model_validator(mode="after")
    def _check(self) -> Objective:
        if self.metric in PER_DEVICE and self.target is None:
            raise ValueError(f"objective {self.metric!r} is per device: give 'target'")
        if self.metric not in PER_DEVICE and self.target is not None:
            raise ValueError(f"objective {self.metric!r} is per model: remove 'target'")
        return self

    @property
    def mode(self) -> Literal["min", "max"]:
        return self.direction or ("max" if self.metric == "accuracy" else "min")

    @property
    def key(self) -> str:
        """The metric name reported by trials, e.g. `latency_pixel4`."""
        return f"{self.metric}_{self.target}" if self.target else self.metric


class Constraint(_Frozen):
    metric: Metric
    target: str | None = None
    max: float | None = Field(None, ge=-MAX_BOUND, le=MAX_BOUND)
    min: float | None = Field(None, ge=-MAX_BOUND, le=MAX_BOUND)

    @model_validator(mode="after")
    def _check(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs 'max' or 'min'")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g}): no value satisfies both")
        if self.metric in PER_DEVICE and self.target is None:
            raise ValueError(f"constraint on {self.metric!r} is per device: give 'target'")
        return self

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.target}" if self.target else self.metric

    def violation(self, value: float | None) -> float:
        """<= 0 when satisfied (Optuna's convention); a missing value violates by 1."""
        if value is None:
            return 1.0
        excess = 0.0
        if self.max is not None:
            excess = max(excess, value - self.max)
        if self.min is not None:
            excess = max(excess, self.min - value)
        return excess

    def describe(self) -> str:
        bound = f"<= {self.max:g}" if self.max is not None else f">= {self.min:g}"
        where = f" on {self.target}" if self.target else ""
        return f"{self.metric}{where} {bound} {UNITS[self.metric]}".strip()


class UsageWeights(_Frozen):
    """AdaDeep-style utility: weighted normalised accuracy against weighted normalised costs."""

    accuracy: float = Field(1.0, ge=0, le=MAX_WEIGHT)
    latency: float = Field(0.0, ge=0, le=MAX_WEIGHT)
    energy: float = Field(0.0, ge=0, le=MAX_WEIGHT)
    storage: float = Field(0.0, ge=0, le=MAX_WEIGHT)
    memory: float = Field(0.0, ge=0, le=MAX_WEIGHT)


class Finetune(_Frozen):
    epochs: float | None = Field(None, gt=0, le=MAX_EPOCHS)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    distill: bool = False


class Polish(_Frozen):
    """After the search, the plans on the front (the best `top_k` by utility when there are more)
    are fine-tuned again from the uncompressed weights with a longer budget (`steps` or
    `epochs`; default three times the search's fine-tune) and, by default, distillation from the
    uncompressed model; then exported, evaluated and measured again. Those numbers are the front
    the search reports, shows in MLflow and registers; each trial's own numbers stay in its
    child run. `top_k: 0` skips it. In supernet mode the plans polished are spread along the
    front, along each cost objective in turn (fastest, smallest, most accurate first), reaching
    `headroom` points past the accuracy constraints (see adacomp/platform/search/polish.py)."""

    top_k: int = Field(3, ge=0, le=1000)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    epochs: float | None = Field(None, gt=0, le=MAX_EPOCHS)
    distill: bool = True
    # Supernet mode: a plan up to this many points below an accuracy constraint is polished
    # too (its accuracy is the supernet's, before any fine-tune: MobileNetV2 recovers 2-3 pt).
    headroom: float = Field(3.0, ge=0, le=100)


class SpaceSettings(_Frozen):
    """How the model's layers become the search's choices: shared by groups of layers (see
    adacomp/search_spaces/groups.py; `auto` picks by model size) and bounded by a sensitivity
    analysis before any trial (adacomp/platform/evaluate/sensitivity.py)."""

    grouping: Literal["auto", "block", "shape", "layer"] = "auto"
    sensitivity: bool = True
    # A probed setting whose accuracy drop before fine-tuning passes this (points) bounds its range.
    max_drop: float = Field(15.0, gt=0, le=100)
    samples: int = Field(512, ge=16, le=10_000_000)  # validation samples each probe is scored on


class Fidelity(_Frozen):
    """Multi-fidelity fine-tuning: multi-objective successive halving on fine-tune steps
    (MO-ASHA). Each plan fine-tunes in `rungs` stages, each `eta` times longer than the one
    before, ending at the full fine-tune budget; after every stage but the last it goes on while
    no plan placed at that stage dominates it (objectives, constraints first), or while it is
    among the best 1/eta there by non-dominated rank and crowding, once `min_results` were
    placed. `rungs: 1` fine-tunes every plan in one go (no early stops)."""

    rungs: int = Field(3, ge=1, le=8)
    eta: int = Field(3, ge=2, le=10)
    min_results: int = Field(3, ge=1, le=MAX_TRIALS)


class Output(_Frozen):
    dir: Path = Path("runs")
    tracking_uri: str | None = None  # None: sqlite:///<dir>/mlflow.db
    experiment: str = "adacomp"
    # How long the end of a search waits for an MLflow server that does not answer (the trials
    # are safe in the ledger either way; `--resume` logs what is missing).
    mlflow_wait_s: float = Field(600.0, ge=0, le=MAX_SECONDS)


class SupernetSettings(_Frozen):
    """`adacomp supernet train | search` and `adacomp export` (AdaSpring): what may be elastic,
    the ensemble-training budget, how many configurations to evaluate and to ship."""

    width: tuple[Fraction, ...] = (0.25, 0.5, 0.75, 1.0)  # fractions of each elastic layer's channels
    rank: tuple[Fraction, ...] = (0.25, 0.5, 0.75, 1.0)  # fractions of each layer's full rank
    depth: bool = True  # skippable blocks, where the model has any
    # A residual stream's channels elastic: the producers a residual add sums (a stage's stem or
    # shortcut conv and each block's last conv) keep one width together. Off (the default), they
    # keep every channel and widths shrink inside blocks only. Measured (benchmarks/results_table.py,
    # 600 steps): on MobileNetV2 streams made every extracted plan > 12 pt below the baseline,
    # against 2-3 pt without them; on ResNet-8 the polished models that met the targets pruned
    # no stream. Sharing weights across stream widths costs every configuration accuracy.
    residual_width: bool = False
    # Alternative branches a layer may run as (AdaSpring's alternative operators): a conv with a
    # spatial kernel as its depthwise-separable form, a head reading a flattened map as a
    # global-average-pooling head. What the supernet holds depends on this section alone (searches
    # naming other `techniques` can share one trained supernet); a search whose `techniques` leave
    # them out sets `alternatives: []`, or the ensemble trains branches it never samples.
    alternatives: tuple[Literal["depthwise_separable", "gap_head"], ...] = ("depthwise_separable", "gap_head")
    precisions: tuple[Literal["fp32", "fp16", "int8", "int8_weights"], ...] = (
        "fp32",
        "fp16",
        "int8",
        "int8_weights",
    )
    steps: int = Field(600, ge=1, le=MAX_STEPS)  # ensemble-training steps (largest, smallest, `sampled`)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=10)
    sampled: int = Field(2, ge=0, le=64)
    distill_weight: float = Field(1.0, ge=0, le=1)  # children learn from the largest's soft labels
    checkpoint_every: int = Field(100, ge=1, le=MAX_STEPS)
    workers: int = Field(1, ge=1, le=1024)  # > 1: data-parallel on Ray Train workers
    # torch threads while training in this process; None: torch's default (every core). Small
    # models train fastest on 1, and 2 threads on a busy 2-core machine were 40x slower.
    threads: int | None = Field(None, ge=1, le=1024)
    trials: int = Field(40, ge=2, le=MAX_TRIALS)  # configurations `adacomp supernet search` evaluates
    bundle_size: int = Field(8, ge=1, le=1024)  # most configurations `adacomp export` ships
    # Batches of 64 that re-estimate BatchNorm statistics per configuration: the largest cost of
    # a supernet-mode plan. benchmarks/supernet_throughput.py against 16 batches (MobileNetV2) and
    # 32 (ResNet-8): 4 ranked configurations as well as 8 (Kendall's tau 0.992 / 0.985 and
    # 0.983 / 1.0; mean difference 0.28-0.45 pt) at half the cost (0.54 against 1.00 s, MobileNetV2).
    bn_batches: int = Field(4, ge=1, le=10_000)
    # What the device's selector trades at run time (the bundle manifest's utility); None: the
    # search's `utility`. The search weighs costs to pick one model to ship; on the device the
    # context's budgets already bound the costs, so AdaSpring's selector runs the most accurate
    # configuration that fits them (accuracy-first weights) and lets a draining battery raise
    # the weight of energy. With cost weights as high as the search's, the cheapest
    # configuration wins in every context and the bundle never adapts.
    runtime_utility: UsageWeights | None = None

    @model_validator(mode="after")
    def _fractions(self) -> SupernetSettings:
        if not self.precisions:
            raise ValueError("supernet.precisions: expected at least one of fp32, fp16, int8, int8_weights")
        return self


class RLSettings(_Frozen):
    """The `rl` strategy (AdaDeep's agent): PPO on RLlib's new API stack, one episode per plan.

    Only evaluations of plans never seen before count against `trials`; an episode that repeats
    a known plan is answered from the cache, so the agent may run many more episodes than trials.
    """

    # Parallel episode samplers; None: `concurrency`, at most `trials`.
    env_runners: int | None = Field(None, ge=1, le=1024)
    # PPO batch, in episodes; None: a fifth of `trials`, 1 to 8 (strategies/rl/budget.py). A
    # batch the trials cannot fill is refused: the agent would never update nor save itself.
    episodes_per_update: int | None = Field(None, ge=1, le=MAX_TRIALS)
    epochs: int = Field(6, ge=1, le=1000)  # PPO passes over each batch
    lr: float = Field(1e-3, gt=0, le=10)
    entropy: float = Field(0.01, ge=0, le=100)  # entropy bonus: keeps the agent exploring
    hidden: tuple[Hidden, ...] = Field((64, 64), min_length=1, max_length=16)
    penalty: float = Field(
        1.0, ge=0, le=MAX_WEIGHT
    )  # reward lost for breaking any constraint, and again per relative violation (capped at 1 each)
    shaping: bool = True  # reward each layer's choice by its estimated cost saving (potential-based)
    # The untrained agent leaves a layer's technique (and, apart, its weights) alone with this
    # probability: it starts near the uncompressed model (see rl/module.py). 1/12 is uniform.
    initial_keep: float = Field(0.4, gt=0, lt=1)
    max_episodes: int | None = Field(
        None, ge=1, le=100 * MAX_TRIALS
    )  # stop if the agent only repeats itself; None: 50 x trials
    init_policy: Path | None = None  # a saved agent to start from (a search's `rl_agent/`)


class Resources(_Frozen):
    """What each trial asks Ray for, and how a trial (or the supernet's training) uses a GPU.

    CPU stays the default: `gpu: 0` trains on the CPU exactly as before. With `gpu` above 0,
    Ray places each trial on a node with that share of a GPU (fractions such as 0.25 let four
    trials share one; above 1, whole GPUs only, as Ray requires) and the trial fine-tunes and
    scores its torch model on the GPU Ray assigned it; export, quantization, the farm's
    measurements and the accuracy of the shipped ONNX artifact stay on the CPU. Not part of a
    search's identity: where a trial trains, not what it measures.
    """

    cpu: float = Field(1.0, gt=0, le=1024)  # CPU cores per trial (Ray accepts fractions)
    gpu: float = Field(0.0, ge=0, le=64)  # GPUs per trial: 0 (CPU only), a fraction, or a whole number
    # Autocast on CUDA: bf16 where the GPU supports it, else fp16 with a gradient scaler. `auto`
    # and `on` do that on a GPU; `on` is refused without one; never on the CPU. A bare YAML
    # on/off (read as true/false) means the word.
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    loader_workers: int = Field(0, ge=0, le=64)  # DataLoader worker processes; 0: in the trial's process
    pin_memory: bool = True  # page-locked batches for faster host-to-GPU copies (on CUDA only)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_off(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on`/`off` as true/false: take them as the words they were.
        if isinstance(data, dict) and isinstance(data.get("mixed_precision"), bool):
            return {**data, "mixed_precision": "on" if data["mixed_precision"] else "off"}
        return data

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float) -> float:
        if gpu > 1 and not gpu.is_integer():
            raise ValueError(f"{gpu:g} GPUs per trial; above 1, Ray takes whole GPUs only (e.g. 1, 2)")
        return gpu

    @model_validator(mode="after")
    def _precision_needs_a_gpu(self) -> Resources:
        if self.mixed_precision == "on" and self.gpu == 0:
            raise ValueError("mixed_precision 'on' needs gpu > 0 (CPU training is fp32); use 'auto' or 'off'")
        return self


# The techniques a supernet holds alternatives for (search_spaces/supernet/plans.py, which a test
# keeps equal to this): kept here so that reading a config never imports torch.
SUPERNET_TECHNIQUES = (
    "skip_block",
    "channel_prune",
    "low_rank",
    "depthwise_separable",
    "gap_head",
    "quantize",
)


# Lighter than a one-off measurement: a search measures every trial, and ranking candidates
# needs less precision than reporting one; a noisy shared machine is tolerated up to cv 0.5.
SEARCH_MEASURE = MeasureSettings(warmup_runs=3, min_runs=10, max_runs=100, max_cv=0.5, max_seconds=10)


class SearchConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
    task: str
    targets: tuple[str, ...] = Field(min_length=1)
    objectives: tuple[Objective, ...] = Field(min_length=1)
    constraints: tuple[Constraint, ...] = ()
    utility: UsageWeights = UsageWeights()
    finetune: Finetune = Finetune()
    # How a plan is scored. `finetune`: the trained model is compressed and fine-tuned, each trial
    # paying for its own recovery. `supernet`: the plan is extracted from a weight-sharing
    # supernet trained once per search (`supernet` settings; reused when this search's directory
    # already holds it), with its own BatchNorm statistics and no training at all, so a search
    # affords hundreds of plans; its space is exactly the supernet's configurations.
    evaluation: Literal["finetune", "supernet"] = "finetune"
    # Only these techniques (registered names, e.g. [channel_prune, quantize]); None: every one.
    techniques: tuple[str, ...] | None = Field(None, min_length=1)
    space: SpaceSettings = SpaceSettings()
    fidelity: Fidelity = Fidelity()
    polish: Polish = Polish()  # not part of the identity: it follows the trials, measures none of them
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    # Measure costs before fine-tuning and never train a plan that breaks a cost constraint.
    # Not part of a search's identity: such plans are infeasible either way, and the front
    # (feasible plans only) is the same with it on or off.
    cost_first: bool = True
    concurrency: int = Field(1, ge=1, le=1024)  # at most, and no more than the cluster's resources fit
    resources: Resources = Resources()  # per trial: CPU, GPU, mixed precision, data loading
    strategy: str = "nsga2"
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy's and Optuna's seed range
    farm: Path | None = None  # farm config; None: the built-in default farm
    measure: MeasureSettings = SEARCH_MEASURE
    output: Output = Output()
    supernet: SupernetSettings = SupernetSettings()
    rl: RLSettings = RLSettings()

    @model_validator(mode="after")
    def _targets_known(self) -> SearchConfig:
        items: list[Objective | Constraint] = [*self.objectives, *self.constraints]
        for item in items:
            if item.target is not None and item.target not in self.targets:
                raise ValueError(
                    f"{item.metric} names target {item.target!r}, "
                    f"which is not in targets {list(self.targets)}"
                )
        if self.techniques is not None:
            bad = [t for t in self.techniques if not t.isidentifier()]
            if bad:
                raise ValueError(f"techniques: {bad[0]!r} is not a technique name")
            if len(set(self.techniques)) != len(self.techniques):
                raise ValueError("techniques: a technique is listed twice")
        if self.evaluation == "supernet":
            lacking = [t for t in self.techniques or () if t not in SUPERNET_TECHNIQUES]
            if lacking:
                raise ValueError(
                    f"techniques: {lacking[0]!r} has no alternative in the supernet; evaluation: supernet "
                    f"searches {', '.join(SUPERNET_TECHNIQUES)} (use evaluation: finetune for {lacking[0]})"
                )
        keys = [o.key for o in self.objectives]
        if len(set(keys)) != len(keys):
            raise ValueError(f"objective {sorted(k for k in keys if keys.count(k) > 1)[0]!r} is listed twice")
        return self


def load_search_config(path: str | Path) -> SearchConfig:
    """Every path the file names is made absolute when it is loaded, so no later change of
    working directory (Ray Tune runs each trial in its own) can move it:
    - `farm` and `rl.init_policy` against the config file's directory, which names them;
    - `output.dir` stays the *working directory's* (where `adacomp ui` and `adacomp pareto`
      look, as README shows) and is resolved by each job at its start; `adacomp submit`
      refuses a relative one (a job's working directory is a temporary copy).
    """
    path = Path(path)
    config = load_yaml_model(path, SearchConfig, "search config", "name, task, targets, objectives, ...")
    base = path.absolute().parent
    if config.farm is not None:
        config = config.model_copy(update={"farm": absolute(base, config.farm)})
    if config.rl.init_policy is not None:
        rl = config.rl.model_copy(update={"init_policy": absolute(base, config.rl.init_policy)})
        config = config.model_copy(update={"rl": rl})
    return config


def as_search_config(config: SearchConfig | str | Path) -> SearchConfig:
    """What every job takes: a validated config as it is, or the path of one, loaded here."""
    return config if isinstance(config, SearchConfig) else load_search_config(config)


Log = Callable[[str], None]  # where a job says what it is doing (the CLI: stderr; Python: silent)


def silent(message: str) -> None:
    """The default `log` of a job called from Python: it says nothing."""
