"""A campaign as jobs: every study launched as its own job array, then each best configuration evaluated in a job.

`bioscale campaign --executor NAME` (slurm, local, or any registered executor) creates every study and submits its workers
(`launch.launch_study`), waits for them, submits one evaluation job per study (seeds on the
job's device), waits again, and leaves the analysis to the caller (`bioscale.workflows.run`).
With `wait=False` it only submits the tuning jobs and says how to finish: rerun the same command
when `bioscale study status` shows every study done (its jobs then find each budget met at once,
and it goes on to the evaluation and the report), so nothing waits on a login node.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any, Callable

from bioscale import executors
from bioscale.contract import Evaluation
from bioscale.errors import UsageError, first_line
from bioscale.formats import percent
from bioscale.spec import CampaignSpec, LaunchSpec
from bioscale.storages import hide_password

from .campaign import _already_evaluated, campaign_study_name
from .launch import launch_study


def evaluate_job(storage: str, name: str, seeds: list[int], epochs: int | None, data_root: str | None) -> Any:
    """One evaluation job: the study's best configuration re-trained with `seeds` on the job's device (a dict, or why not)."""
    from ._results import evaluate_study

    try:
        return evaluate_study(storage, name, seeds=seeds, epochs=epochs, device="auto", data_root=data_root, progress=False)
    except UsageError as error:  # e.g. every trial diverged
        return str(error)


def run_campaign_jobs(campaign: CampaignSpec, launch: LaunchSpec, *, wait: bool = True,
                      say: Callable[[str], None] = print, rerun: list[str] | None = None) -> list[str] | None:
    """Launch every study of `campaign` as jobs; with `wait`, wait, evaluate each in a job, and return the study names.

    Without `wait` it returns None after submitting, having said how to finish (`rerun`: the command to repeat).
    """
    campaign = campaign.checked()
    launch = launch.checked(campaign.storage)
    executors.get(launch.executor)(launch).check()
    names = [campaign_study_name(s) for s in campaign.studies]
    launched = [launch_study(s, launch) for s in campaign.studies]
    for one in launched:
        say(one.summary())
    if not wait:
        say(f"{len(launched)} studies submitted. Follow them with: bioscale study status {hide_password(campaign.storage or '')}"
            + (f"\nWhen every study is done, run the same command again to evaluate and report:\n  {shlex.join(rerun)}"
               if rerun else ""))
        return None
    say(f"waiting for the tuning jobs of {len(launched)} studies ...")
    for one in launched:
        one.wait()
    todo = [n for n in names if n not in _already_evaluated(campaign.storage, names, campaign.seeds)]
    if todo:
        executor = executors.get(launch.executor)(replace(launch, jobs=len(todo)))
        jobs = executor.map_array(evaluate_job, [campaign.storage] * len(todo), todo, [list(campaign.seeds)] * len(todo),
                                  [campaign.eval_epochs] * len(todo), [campaign.studies[0].data_root] * len(todo))
        say(f"evaluating {len(todo)} studies in job(s) {', '.join(str(j.job_id) for j in jobs)} ...")
        for name, job in zip(todo, jobs):
            try:
                result = job.result()
            except Exception as error:  # the job failed: its log says why
                result = f"the evaluation job failed ({first_line(error)})"
            evaluation = Evaluation.read(result) if isinstance(result, dict) else None
            say(f"evaluated {name}: " + (f"test error {percent(evaluation.test_error_mean)} over seeds {list(campaign.seeds)}"
                                         if evaluation is not None else f"skipped ({result})"))
    return names
