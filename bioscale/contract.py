"""What bioscale writes into an Optuna storage, in code: the one place its writer and its readers agree on.

The study driver (`bioscale.study`) writes studies and trials; analysis, the CLI's read commands
and any Optuna client read them. Both sides take from here every attribute name, what the
trial states mean (finished, counted against the budget, re-queued after a lost worker), the
worker id, and the rule that picks the best trial. docs/storage-contract.md explains it in prose.
This module imports nothing that trains, and Optuna only inside the functions that need it, so
that the command line can name stages and end reasons without loading it.
"""

from __future__ import annotations

import datetime
import enum
import math
import os
import socket
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # Optuna is imported where it is used, so that the command line can check names without it
    import optuna
    from optuna.trial import FrozenTrial

# The objective of every study: what the dashboard labels its axis with (Optuna's metric names).
METRIC_NAME = "validation error"


def name_objective(study: optuna.Study) -> None:
    """Name the study's objective METRIC_NAME, so that the dashboard's axes say what it is."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAME])

# ---------------------------------------------------------------------------------------------
# Trials

# Trial user attributes: the run's identity, written as it starts (`seed` draws the initial
# weights, the rule's state and noise; `data_seed` the minibatch order; `population` lists the
# numbers of the trials trained together with it as one batched model, itself included)...
SEED, DATA_SEED, POPULATION, DEVICE, DEVICE_NAME, WORKER, VERSIONS, CONFIG, CURVE = (
    "seed", "data_seed", "population", "device", "device_name", "worker", "versions", "config", "curve")
# ... and its results, written as it ends (reset to null when a re-queued trial starts again).
TRAIN_ERROR, VAL_ERROR, TEST_ERROR, BEST_EPOCH, END_REASON, SECONDS = (
    "train_error", "val_error", "test_error", "best_epoch", "end_reason", "seconds")
RESULT_ATTRS = (TRAIN_ERROR, VAL_ERROR, TEST_ERROR, BEST_EPOCH, END_REASON, SECONDS)
# `role` is "default" on the one trial per tuning study that trains the rule's default settings:
# it measures how much tuning buys (tunability), stays out of the search's statistics and budget,
# and counts as a candidate for the study's best trial (the incumbent). `outside_space` lists the
# default's settings that a --set range excludes: it trains them anyway, as the rule's default.
ROLE, DEFAULT_CONFIG, OUTSIDE_SPACE = "role", "default", "outside_space"
# `queued_params` on the default trial: the values it was queued with, which its worker reads back before the
# trial starts (Optuna keeps them in a private system attribute of its own).
QUEUED_PARAMS = "queued_params"
# `outcome` on the in-memory copies of finished trials that analysis fits its surrogate to (never in a storage):
# complete, diverged, stalled, pruned or failed.
OUTCOME = "outcome"
# `checkpoint` is where the trial's population saves as it trains (bioscale.resume); `resumed_from`
# the epochs it had completed when it resumed from one (null: it trained from epoch 0).
CHECKPOINT, RESUMED_FROM = "checkpoint", "resumed_from"
# On storages without heartbeats of their own (journal files), a running trial's worker writes
# `heartbeat`, the time (seconds since the epoch) of its latest beat, so that workers on other
# machines can tell a lost worker's trial from a live one.
HEARTBEAT = "heartbeat"
TRIAL_ATTRS = (SEED, DATA_SEED, POPULATION, DEVICE, DEVICE_NAME, WORKER, VERSIONS, CONFIG, CURVE, ROLE, OUTSIDE_SPACE,
               QUEUED_PARAMS, CHECKPOINT, RESUMED_FROM, HEARTBEAT, *RESULT_ATTRS)
# The curve's series, one value per epoch.
CURVE_SERIES = ("train", "val", "test")


class EndReason(str, enum.Enum):
    """How a trial that did not complete ended; its `end_reason` is `"{value}: {detail}"` (or just the value)."""

    DIVERGED = "diverged"  # non-finite loss (or, after bioscale.train, one beyond its bound)
    STALLED = "stalled"  # error stayed at chance level for `chance_patience` epochs
    PRUNED = "pruned"  # stopped by the study's pruner
    OUT_OF_MEMORY = "out of memory"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    PREEMPTED = "preempted"  # the scheduler's pre-timeout or preemption signal: saved, re-queued, resumed
    # Stopped at a rung by the study's successive halving (`HALVED.text(f"stopped by successive halving at epoch {n}")`):
    # a PRUNED trial whose value is its best validation error so far; neither a failure nor diverged.
    HALVED = "halved"

    def text(self, detail: str = "") -> str:
        """The `end_reason` attribute: the reason, then its detail after a colon."""
        return f"{self.value}: {detail}" if detail else self.value


DIVERGED, STALLED, PRUNED, OUT_OF_MEMORY, ERROR, INTERRUPTED, PREEMPTED, HALVED = (
    EndReason.DIVERGED, EndReason.STALLED, EndReason.PRUNED, EndReason.OUT_OF_MEMORY, EndReason.ERROR, EndReason.INTERRUPTED,
    EndReason.PREEMPTED, EndReason.HALVED)
# Failures that used up their share of the budget; any other FAIL is a lost worker's trial, re-queued.
COUNTED_FAILURES = (ERROR, OUT_OF_MEMORY)
# Before the stalled reason had its own word, a stall was stored as "diverged: error stayed at chance ...".
_LEGACY_STALL = "diverged: error stayed at chance"


def read_end_reason(text: object) -> EndReason | None:
    """The EndReason an `end_reason` attribute names (None when it names none)."""
    if not isinstance(text, str) or not text:
        return None
    if text.startswith(_LEGACY_STALL):
        return STALLED
    return next((reason for reason in EndReason
                 if text == reason.value or text.startswith((reason.value + ":", reason.value + " "))), None)


def end_reason(trial: FrozenTrial) -> str:
    """How a trial ended, in one word or phrase: the EndReason its `end_reason` names, else its state."""
    reason = read_end_reason(trial.user_attrs.get(END_REASON))
    if reason is not None:
        return reason.value
    return str(trial.user_attrs.get(END_REASON) or trial.state.name.lower()).split(":")[0].strip()


def is_default_config(trial: FrozenTrial) -> bool:
    """Whether `trial` trains the rule's default settings (not a sample of the search)."""
    return trial.user_attrs.get(ROLE) == DEFAULT_CONFIG


def search_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials of the search itself: every trial but the default configuration's."""
    return [t for t in trials if not is_default_config(t)]


def default_trial(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The finished default-configuration trial, if the study has one."""
    return next((t for t in trials if is_default_config(t) and is_finished(t)), None)


def counts_against_budget(trial: FrozenTrial) -> bool:
    """Whether a search trial uses up one of the study's trials: finished, running or queued."""
    from optuna.trial import TrialState

    return not is_default_config(trial) and (trial.state in (TrialState.RUNNING, TrialState.WAITING) or is_finished(trial))


def is_finished(trial: FrozenTrial) -> bool:
    """Complete, pruned (diverged and out-of-memory runs included), or failed with a recorded error.

    A lost worker's trial is not finished: it was re-queued, and its re-run counts instead.
    """
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and read_end_reason(trial.user_attrs.get(END_REASON)) in COUNTED_FAILURES)


def was_requeued(trial: FrozenTrial) -> bool:
    """A trial whose worker was lost: failed without a counted reason, and run again as a new trial."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and not is_finished(trial)


def finished_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The finished trials among `trials`."""
    return [t for t in trials if is_finished(t)]


def complete_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials with a finite objective value."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]


def best_trial(trials: Iterable[FrozenTrial], *, search_only: bool = False) -> FrozenTrial | None:
    """The incumbent: the complete trial with the lowest validation error, the earliest on ties; None when none completed.

    Only COMPLETE trials trained the study's full budget (a trial stopped by successive halving is
    PRUNED), and the default-settings trial is one of them; `search_only` leaves it out (the
    search's best, which tunability compares with the default).
    """
    candidates = search_trials(trials) if search_only else trials
    return min(complete_trials(candidates), key=lambda t: (t.value, t.number), default=None)


def incumbent_role(trial: FrozenTrial) -> str:
    """Which trial the incumbent is: "default" (the rule's default settings) or "search" (a sampled configuration)."""
    return DEFAULT_CONFIG if is_default_config(trial) else "search"


def naive_time(moment: datetime.datetime) -> datetime.datetime:
    """`moment` as Optuna stores times, without a time zone: PostgreSQL's clock comes with its session's zone, its stored heartbeats without."""
    return moment.replace(tzinfo=None)


def worker_id() -> str:
    """`host:pid` of this process; a running trial records `host:pid:trial number` as its `worker`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def trial_worker(trial: FrozenTrial) -> tuple[str, int] | None:
    """(host, pid) of the worker running `trial`, or None when it names none of its own.

    A re-queued trial inherits its dead predecessor's `worker` until it starts; the trial-number
    suffix tells the two apart.
    """
    worker = trial.user_attrs.get(WORKER)
    if not isinstance(worker, str) or not worker.endswith(f":{trial.number}"):
        return None
    host, pid, _ = worker.rsplit(":", 2)
    try:
        return host, int(pid)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Studies

# The stages a study can be: search one family's architecture, or tune one rule on a fixed one.
ARCHITECTURE, TUNE = "architecture", "tune"
STAGES = (ARCHITECTURE, TUNE)


@dataclass(frozen=True)
class Evaluation:
    """The `evaluation` study attribute: the best configuration re-trained with several seeds (`bioscale study evaluate`).

    Test errors are measured at each seed's epoch of lowest validation error (`..._at_best_val`)
    and at the last epoch; seeds that diverged are listed under `diverged`, not averaged.
    `read` takes any stored value, also one an older bioscale wrote (missing fields read as None).
    """

    seeds: list[int] = field(default_factory=list)
    test_errors: list[float] = field(default_factory=list)  # at the last epoch
    train_errors: list[float] = field(default_factory=list)
    test_error_mean: float | None = None
    test_error_std: float | None = None
    test_errors_at_best_val: list[float] = field(default_factory=list)
    best_val_epochs: list[int] = field(default_factory=list)
    test_error_at_best_val_mean: float | None = None
    test_error_at_best_val_std: float | None = None
    epochs: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    trial: int | None = None
    device: str | None = None
    data_seed: int | None = None
    diverged: list[dict[str, Any]] = field(default_factory=list)  # [{"seed": s, "reason": text}]

    def to_attr(self) -> dict[str, Any]:
        """The stored value (`diverged` only when a seed diverged)."""
        out = asdict(self)
        if not self.diverged:
            del out["diverged"]
        return out

    @classmethod
    def read(cls, value: object) -> Evaluation | None:
        """The record in a stored value (or an Evaluation); None when there is none."""
        if isinstance(value, Evaluation):
            return value
        if not isinstance(value, Mapping) or not value:
            return None
        out = {}
        for f in fields(cls):
            item = value.get(f.name)
            if f.name in ("config",):
                item = dict(item) if isinstance(item, Mapping) else {}
            elif f.name in ("seeds", "test_errors", "train_errors", "test_errors_at_best_val", "best_val_epochs", "diverged"):
                item = [x for x in item if not (f.name == "diverged" and not isinstance(x, Mapping))] \
                    if isinstance(item, list) else []
            out[f.name] = item
        return cls(**out)



@dataclass(frozen=True)
class StudyInfo:
    """A study's user attributes, typed. Every field is one attribute; None where a study has none.

    `from_attrs` reads any study, also one bioscale did not write (then `stage` is None).
    """

    stage: str | None = None  # "architecture" or "tune"
    protocol: str | None = None  # "paper" (the paper's search, like for like), "extended", or "custom"
    dataset: str | None = None
    arch: str | None = None  # as named: preset name, spec string, or the family searched
    arch_spec: str | None = None  # the spec trained (tune stage)
    arch_from: str | None = None  # "@STUDY" when the architecture came from an architecture study
    family: str | None = None  # fc, lc, conv or mixed
    rule: str | None = None
    schedule: str | None = None  # target-propagation rules only
    label: str | None = None  # rule, plus -schedule
    epochs: int | None = None
    trials: int | None = None  # the global budget, the latest any run asked for
    sampler: str | None = None
    pruner: str | None = None
    seed: int | None = None
    chance_patience: int | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # values fixed with --set
    space: dict[str, str] = field(default_factory=dict)  # {name: Optuna's distribution JSON}
    bioscale_version: str | None = None
    sampler_settings: dict[str, Any] | None = None
    # The search design (`design`): {"sampler", "seed" (the sampler's), "draws" (the key hashed into that
    # seed: equal keys sample identical configurations), "shared" ("pair", "rules" or "none"), "fidelity"
    # (None: every trial trains the full budget; else {"scheme": "halving" or "hyperband", "eta",
    # "rungs": epochs at each rung, ascending, the last the study's epochs})}. None on older studies.
    design: dict[str, Any] | None = None
    evaluation: Evaluation | None = None  # written by `bioscale study evaluate`
    winner: str | None = None  # architecture stage: the chosen spec
    winner_trial: int | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "StudyInfo":
        """Read a study's user attributes; unknown ones are ignored, malformed ones read as missing."""
        values = {}
        for f in fields(cls):
            value = attrs.get(f.name)
            if f.name in ("fixed", "space"):
                value = dict(value) if isinstance(value, dict) else {}
            elif f.name in ("sampler_settings", "design"):
                value = value if isinstance(value, dict) else None
            elif f.name == "evaluation":
                value = Evaluation.read(value)
            elif f.name in ("epochs", "trials", "seed", "chance_patience", "winner_trial"):
                value = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            elif value is not None:
                value = str(value)
            values[f.name] = value
        return cls(**values)

    @property
    def written_by_bioscale(self) -> bool:
        """Whether bioscale created this study (it writes `stage` last, after every other attribute)."""
        return self.stage is not None

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes a new study gets, `stage` last (a reader that sees it sees everything else)."""
        attrs = {name: getattr(self, name) for name in STUDY_ATTRS}
        attrs[EVALUATION] = self.evaluation.to_attr() if self.evaluation is not None else None
        attrs = {k: v for k, v in attrs.items() if k != STAGE and not (k in _WRITTEN_LATER and v is None)}
        return {**attrs, STAGE: self.stage}


STUDY_ATTRS = tuple(f.name for f in fields(StudyInfo))
# The study attributes written after the study is created, and the two every run reads back.
STAGE, TRIALS, EVALUATION, WINNER, WINNER_TRIAL, SAMPLER_SETTINGS, DESIGN = (
    "stage", "trials", "evaluation", "winner", "winner_trial", "sampler_settings", "design")
_WRITTEN_LATER = (SAMPLER_SETTINGS, EVALUATION, WINNER, WINNER_TRIAL)
# What must match when a rerun resumes an existing study.
SAME_ON_RESUME = ("stage", "protocol", "dataset", "arch", "arch_spec", "rule", "schedule", "epochs", "sampler", "pruner",
                  "seed", "chance_patience", "fixed", "space", "design")
assert set(SAME_ON_RESUME) | set(_WRITTEN_LATER) | {TRIALS} <= set(STUDY_ATTRS)
