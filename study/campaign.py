"""Campaigns: a tuning study for every rule and schedule (and activation) on fixed architectures, then evaluation.

Every study follows one protocol (`bioscale.spaces.protocols`, the paper's by default) and also
trains its rule's default settings once, outside its budget (how much tuning buys).

`run_campaign` is what `bioscale demo` (digits, small budget, every core) and `bioscale campaign`
(the paper's protocol on real data) run before `bioscale.analysis.analyze`. Everything lands in
one Optuna storage, so rerunning the same campaign resumes it: finished studies are skipped,
evaluated ones are not evaluated again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Sequence

import optuna

from bioscale import rules
from bioscale.contract import best_trial
from bioscale.devices import resolve_devices
from bioscale.errors import UsageError
from bioscale.storages import open_existing
from bioscale.values import check_value

from ._plan import label as make_label, study_name as make_study_name
from ._results import evaluate_study


@dataclass(frozen=True)
class CampaignStudy:
    """One (rule, schedule, architecture, activation) tuning study of a campaign."""

    rule: str
    schedule: str | None
    arch: str
    dataset: str
    activation: str | None = None  # set in a tanh-vs-ReLU experiment: one study per activation

    @property
    def label(self) -> str:
        """`dtp-alternating`, `bp`, ..."""
        return make_label(self.rule, self.schedule)

    @property
    def name(self) -> str:
        """The study's name in the storage."""
        return make_study_name("tune", self.dataset, self.arch, self.label, self.activation)


def plan_campaign(dataset: str, archs: Sequence[str], rule_names: Sequence[str] | None = None,
                  activations: Sequence[str] | None = None) -> list[CampaignStudy]:
    """Every study of a campaign: each rule (TP-family rules in both schedules) on each architecture.

    With `activations` (e.g. tanh and relu), each rule gets one study per activation, each tuned
    on its own with the same budget: the tanh-vs-ReLU experiment.
    """
    known = rules.names()
    chosen = list(rule_names) if rule_names else known
    for name in chosen:
        rules.get(name)  # unknown names: one clear line
    for activation in activations or ():
        try:
            check_value("activation", activation)
        except ValueError as error:
            raise UsageError(f"bad --activations: {error}") from None
    out = []
    for arch in archs:
        for name in chosen:
            schedules = tuple(sorted(rules.get(name).schedules)) or (None,)
            out += [CampaignStudy(name, schedule, arch, dataset, activation)
                    for schedule in schedules for activation in (activations or (None,))]
    return out


def _one_thread_if_asked(options: dict[str, Any]) -> None:
    """Torch on one thread in this worker process when `options` pops `single_thread`."""
    import torch

    if options.pop("single_thread", False):
        torch.set_num_threads(1)


def _tune(study: CampaignStudy, options: dict[str, Any]) -> tuple[str, float | None]:
    """Run one study to its budget in this process (a joblib worker); returns its best validation error."""
    from ._driver import run_study

    _one_thread_if_asked(options)
    result = run_study("tune", study.rule, study.dataset, study.arch, schedule=study.schedule, activation=study.activation,
                       default_trial=True, progress=False, **options)
    best = best_trial(result.get_trials(deepcopy=False))
    return study.name, best.value if best else None


def _evaluate(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    _one_thread_if_asked(options)
    try:
        return name, evaluate_study(study_name=name, progress=False, **options)
    except UsageError as error:  # e.g. a study whose every trial diverged
        return name, {"error": str(error)}


def run_campaign(studies: Sequence[CampaignStudy], *, storage: str, trials: int, epochs: int, sampler: str = "tpe",
                 pruner: str = "none", workers: int = 1, devices: Sequence[str] | str = "auto", seeds: Sequence[int] = (0, 1, 2),
                 eval_epochs: int | None = None, data_root: str | None = None, fixed: dict[str, Any] | None = None,
                 parallel_studies: bool = False, chance_patience: int = 5, progress: bool = True,
                 protocol: str = "paper", population: int = 1) -> list[str]:
    """Tune every study to its trial budget, then evaluate each best configuration with `seeds`; returns the study names.

    With `parallel_studies`, `workers` processes each take whole studies (one thread each: many
    small studies fill a CPU best that way); otherwise each study runs on all `workers` in turn.
    Each worker trains up to `population` trials of a study at once as one batched model.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    devices = resolve_devices(devices)
    show = progress and sys.stderr.isatty()
    options = dict(storage=storage, trials=trials, epochs=epochs, sampler=sampler, pruner=pruner, protocol=protocol,
                   data_root=data_root, fixed=dict(fixed or {}), chance_patience=chance_patience, population=population)
    say = (lambda text: tqdm.write(text, file=sys.stderr)) if progress else (lambda text: None)
    names = [s.name for s in studies]
    say(f"campaign of {len(studies)} studies on {', '.join(devices)}")
    with tqdm(total=2 * len(studies), desc="campaign", unit="step", disable=not show, dynamic_ncols=True) as bar:
        if parallel_studies and workers > 1:
            jobs = (delayed(_tune)(s, {**options, "devices": [devices[i % len(devices)]], "single_thread": True})
                    for i, s in enumerate(studies))
            results = Parallel(n_jobs=workers, return_as="generator_unordered")(jobs)
        else:
            results = (_tune(s, {**options, "workers": workers, "devices": list(devices)}) for s in studies)
        for name, value in results:
            bar.update()
            say(f"tuned     {name}: best validation error {_pct(value)}")
        evaluated = _already_evaluated(storage, names, seeds)
        todo = [n for n in names if n not in evaluated]
        bar.update(len(evaluated))
        eval_options = dict(storage=storage, seeds=list(seeds), epochs=eval_epochs, data_root=data_root)
        if parallel_studies and workers > 1:
            jobs = (delayed(_evaluate)(n, {**eval_options, "device": devices[i % len(devices)], "single_thread": True})
                    for i, n in enumerate(todo))
            results = Parallel(n_jobs=workers, return_as="generator_unordered")(jobs)
        else:
            results = (_evaluate(n, {**eval_options, "device": devices[0]}) for n in todo)
        for name, evaluation in results:
            bar.update()
            if evaluation and "error" not in evaluation:
                say(f"evaluated {name}: test error {_pct(evaluation['test_error_mean'])} over seeds {list(seeds)}")
            else:
                say(f"evaluated {name}: skipped ({(evaluation or {}).get('error', 'no result')})")
    return names


def _already_evaluated(storage: str, names: Sequence[str], seeds: Sequence[int]) -> set[str]:
    storage_obj = open_existing(storage)
    done = set()
    for name in names:
        evaluation = optuna.load_study(study_name=name, storage=storage_obj).user_attrs.get("evaluation") or {}
        if evaluation.get("seeds") == list(seeds):
            done.add(name)
    return done


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
