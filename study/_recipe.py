"""The one recipe that builds and fits a population from its run configuration.

Trials (`_objective`) and the evaluation of a study's best configuration (`_results`) both train
through it, so a configuration read back from a storage (`RunConfig.from_stored`) trains exactly
as it was recorded.
"""

from __future__ import annotations

from typing import Any

from bioscale.run_config import RunConfig
from bioscale.train import FitResult, build, fit


def fit_configuration(run: RunConfig, **fit_options: Any) -> list[FitResult]:
    """Build and fit `run`, one member per seed; `fit_options` go to `bioscale.train.fit` (callback, progress, drop_stopped, checkpoint).

    The net and data live only in this frame (freed when it returns or raises).
    """
    data, learner = build(run)
    return fit(learner, data, run, **fit_options)
