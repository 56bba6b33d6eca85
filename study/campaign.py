"""Campaigns: a tuning study for every rule and schedule (and activation) on fixed architectures, then evaluation.

Every study follows one protocol (`bioscale.spaces.protocols`, the paper's by default) and one
search design (`bioscale.study._design`: each rule its own draws, a tanh/ReLU pair sharing them,
every rule sharing them with `shared_draws`), and also trains its rule's default settings once,
outside its budget: how much tuning buys, and a candidate for the study's best trial.

`run_campaign` is what `bioscale demo` (digits, small budget, every core) and `bioscale campaign`
(the paper's protocol on real data) run before `bioscale.analysis.analyze`. Everything lands in
one Optuna storage, so rerunning the same campaign resumes it: finished studies are skipped,
evaluated ones are not evaluated again.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import optuna

from bioscale import executors
from bioscale.contract import Evaluation, StudyInfo, best_trial, incumbent_role
from bioscale.devices import resolve_devices
from bioscale.errors import UsageError
from bioscale.formats import percent
from bioscale.spec import CampaignSpec, LaunchSpec, StudySpec, study_name
from bioscale.storages import open_existing

from ._results import evaluate_study


def campaign_study_name(spec: StudySpec) -> str:
    """The name a campaign's study gets in the storage (its spec's own, else the default name of its arch as given)."""
    spec = spec.checked()
    return spec.study_name or study_name(spec.stage, spec.dataset, spec.arch, spec.label, spec.activation)


def _one_thread(single_thread: bool) -> None:
    """Torch on one thread in this worker process when asked (many small studies side by side)."""
    import torch

    if single_thread:
        torch.set_num_threads(1)


def _tune(spec: StudySpec, single_thread: bool = False) -> tuple[str, str]:
    """Run one study to its budget in this process (a joblib worker); returns its name and its incumbent, in words."""
    from ._driver import run_study

    _one_thread(single_thread)
    result = run_study(spec, progress=False)
    best = best_trial(result.get_trials(deepcopy=False))
    said = "-" if best is None else f"{percent(best.value)} (trial {best.number}, {incumbent_role(best)})"
    return campaign_study_name(spec), said


def _evaluate(name: str, campaign: CampaignSpec, device: str, single_thread: bool = False) -> tuple[str, Evaluation | str]:
    """Evaluate one study's best configuration; returns its name and its evaluation, or why there is none."""
    _one_thread(single_thread)
    try:
        return name, Evaluation.read(evaluate_study(campaign.storage, name, seeds=list(campaign.seeds),
                                                    epochs=campaign.eval_epochs, device=device,
                                                    data_root=campaign.studies[0].data_root, progress=False))
    except UsageError as error:  # e.g. a study whose every trial diverged
        return name, str(error)


def run_campaign(campaign: CampaignSpec, *, progress: bool = True) -> list[str]:
    """Tune every study of `campaign` to its trial budget, then evaluate each best configuration; returns the study names.

    With `side_by_side` > 1, that many processes each take whole studies (one thread each: many
    small studies fill a CPU best that way, each on one device in turn); otherwise each study
    runs on its own workers and devices, one after another.
    """
    from tqdm.auto import tqdm

    campaign = campaign.checked()
    studies = campaign.studies
    devices = resolve_devices(studies[0].devices) if studies else ["cpu"]
    parallel = campaign.side_by_side > 1
    # The evaluation pool: whole studies side by side in processes, or one after another here.
    pool = "pool" if parallel else "inline"
    executor = executors.get(pool)(LaunchSpec(executor=pool, jobs=campaign.side_by_side))
    show = progress and sys.stderr.isatty()
    say = (lambda text: tqdm.write(text, file=sys.stderr)) if progress else (lambda text: None)
    names = [campaign_study_name(s) for s in studies]
    say(f"campaign of {len(studies)} studies on {', '.join(devices)}")
    with tqdm(total=2 * len(studies), desc="campaign", unit="step", disable=not show, dynamic_ncols=True) as bar:
        if parallel:
            specs = [replace(s, workers=1, devices=(devices[i % len(devices)],)) for i, s in enumerate(studies)]
        else:
            specs = [replace(s, devices=tuple(devices)) for s in studies]
        for _, (name, said) in executor.as_completed(executor.map_array(_tune, specs, [parallel] * len(specs))):
            bar.update()
            say(f"tuned     {name}: best validation error {said}")
        evaluated = _already_evaluated(campaign.storage, names, campaign.seeds)
        todo = [n for n in names if n not in evaluated]
        bar.update(len(evaluated))
        on = [devices[i % len(devices)] if parallel else devices[0] for i in range(len(todo))]
        jobs = executor.map_array(_evaluate, todo, [campaign] * len(todo), on, [parallel] * len(todo))
        for _, (name, evaluation) in executor.as_completed(jobs):
            bar.update()
            if isinstance(evaluation, Evaluation):
                say(f"evaluated {name}: test error {percent(evaluation.test_error_mean)} over seeds {list(campaign.seeds)}")
            else:
                say(f"evaluated {name}: skipped ({evaluation})")
    return names


def _already_evaluated(storage: str | None, names: list[str], seeds: tuple[int, ...]) -> set[str]:
    storage_obj = open_existing(storage)
    done = set()
    for name in names:
        evaluation = StudyInfo.from_attrs(optuna.load_study(study_name=name, storage=storage_obj).user_attrs).evaluation
        if evaluation is not None and evaluation.seeds == list(seeds):
            done.add(name)
    return done
