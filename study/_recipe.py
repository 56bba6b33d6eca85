"""The one recipe that builds and fits a population from a stored configuration (a trial's `config`).

Trials (`_objective`) and the evaluation of a study's best configuration (`_results`) both train
through it, so a configuration read back from a storage trains exactly as it was recorded.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from bioscale import defaults
from bioscale.train import FitResult, build, fit


def fit_configuration(config: Mapping[str, Any], settings: Mapping[str, Any], seeds: Sequence[int], device: str, *,
                      data_seed: int, data_root: str | None = None, val_size: float | int | None = None,
                      **fit_options: Any) -> list[FitResult]:
    """Train `config` (rule, dataset, arch, epochs, activation, batch size) with the rule `settings`, one member per seed.

    `data_seed` draws the minibatch order every member shares; `fit_options` go to `bioscale.train.fit`
    (callback, progress, chance_patience, drop_stopped). The net and data live only in this frame.
    """
    data, learner = build(rule=config["rule"], dataset=config["dataset"], arch=config["arch"],
                          activation=config.get("activation", defaults.ACTIVATION), seeds=seeds, device=device,
                          data_root=data_root, val_size=val_size, settings=dict(settings))
    return fit(learner, data, epochs=config["epochs"], batch_size=config.get("batch_size", defaults.BATCH_SIZE),
               seed=data_seed, **fit_options)
