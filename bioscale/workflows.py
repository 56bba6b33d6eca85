"""The demo and the campaign end to end, one call each: tune every rule, evaluate each best configuration, analyse.

These sit on top of both `bioscale.study` (tuning, evaluation) and `bioscale.analysis` (figures,
report), as the command line does; a notebook user calls them the same way `bioscale demo` and
`bioscale campaign` do.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from .devices import AUTO, resolve_devices
from .storages import DEFAULT_STORAGE

# Digits runs only ~9 minibatches an epoch, so a slow start is no sign of divergence there:
# the demo never stops a run for sitting at chance (NaN losses still end it).
# Each study's trials, its default-settings trial included, train as one population (one
# batched model), which on digits' small nets takes less time than one after another.
DEMO = {"dataset": "digits", "archs": ("fc", "lc"), "trials": 6, "epochs": 10, "seeds": (0, 1), "chance_patience": 0,
        "activations": ("tanh", "relu"), "population": 7}


@dataclass
class CampaignOutcome:
    """What a demo or campaign produced: its studies, the best-result table, the report and how to browse it."""

    studies: list[str]
    table: pd.DataFrame
    report: Path
    dashboard: list[str]
    trials: int
    epochs: int
    seeds: list[int]
    seconds: float

    def summary(self) -> str:
        """The lines `bioscale demo` and `bioscale campaign` print at the end."""
        columns = ["dataset", "arch", "label", "activation", "trials_complete", "best_val_error", "evaluated_test_mean"]
        return "\n".join([
            f"\nbest errors ({self.trials} trials x {self.epochs} epochs per study, "
            f"evaluated over seeds {','.join(map(str, self.seeds))}):",
            self.table[columns].to_string(index=False, float_format=lambda v: f"{100 * v:.2f}%"),
            f"\nreport: {self.report.resolve()}",
            f"html:   {self.report.with_suffix('.html').resolve()}",
            f"dashboard: {shlex.join(self.dashboard)}",
            f"took {self.seconds:.0f} s"])


def campaign_folder(dataset: str, arch: str) -> Path:
    """The default output folder of a campaign, e.g. `campaign-mnist-fc` (spec strings made file-name safe)."""
    return Path(f"campaign-{dataset}-{arch.strip('@').replace(':', '-').replace('*', 'x').replace(',', '_')}")


def demo(*, out: str | Path = "bioscale-demo", storage: str | None = None, trials: int = DEMO["trials"],
         epochs: int = DEMO["epochs"], seeds: Sequence[int] = DEMO["seeds"], workers: int | None = None,
         rules: Sequence[str] | None = None, activations: Sequence[str] = DEMO["activations"],
         devices: Sequence[str] | str = AUTO, population: int = DEMO["population"], progress: bool = True) -> CampaignOutcome:
    """The paper's protocol at a small budget on digits: every rule and schedule, on the fc and lc presets, once per
    activation (the tanh-vs-ReLU experiment); each best configuration evaluated; then the report.

    Studies run side by side, one per worker process (`workers`, default every core).
    """
    from .study.campaign import plan_campaign

    devices = resolve_devices(devices)
    studies = plan_campaign(DEMO["dataset"], DEMO["archs"], rules, activations)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'bioscale.db').resolve()}"
    return _tune_evaluate_analyse(studies, storage, out, ("png", "pdf"), progress=progress, trials=trials,
                                  epochs=epochs, seeds=seeds, sampler="random", pruner="none",
                                  workers=workers or os.cpu_count() or 1, devices=devices, fixed={}, data_root=None,
                                  parallel_studies=True, chance_patience=DEMO["chance_patience"], protocol="paper",
                                  population=population)


def campaign(dataset: str, arch: str, *, rules: Sequence[str] | None = None, protocol: str = "paper",
             activations: Sequence[str] | None = None, trials: int = 60, epochs: int = 30,
             sampler: str = "random", pruner: str = "none", seeds: Sequence[int] = (0, 1, 2), storage: str | None = None,
             workers: int = 1, devices: Sequence[str] | str = AUTO, data_root: str | None = None,
             fixed: Mapping[str, Any] | None = None, out: str | Path | None = None,
             formats: Sequence[str] = ("png", "pdf"), chance_patience: int = 5, population: int = 1,
             progress: bool = True) -> CampaignOutcome:
    """The paper's protocol (by default) on one dataset and architecture: random search per rule and schedule
    (and per activation, given `activations`), evaluation, report."""
    from .spaces.protocols import check_protocol
    from .study.campaign import plan_campaign

    devices = resolve_devices(devices)
    check_protocol(protocol)
    studies = plan_campaign(dataset, [arch], rules, activations)
    out = Path(out) if out is not None else campaign_folder(dataset, arch)
    return _tune_evaluate_analyse(studies, storage or DEFAULT_STORAGE, out, tuple(formats), progress=progress,
                                  trials=trials, epochs=epochs, seeds=seeds, sampler=sampler, pruner=pruner,
                                  workers=workers, devices=devices, fixed=dict(fixed or {}), data_root=data_root,
                                  parallel_studies=False, chance_patience=chance_patience, protocol=protocol,
                                  population=population)


def _tune_evaluate_analyse(studies, storage: str, out: Path, formats: tuple[str, ...], *, progress: bool,
                           seeds: Sequence[int], **options: Any) -> CampaignOutcome:
    from .analysis import ARTIFACT_DIR_NAME, analyze, best_table
    from .study import dashboard_command
    from .study.campaign import run_campaign

    start = time.perf_counter()
    seeds = [int(s) for s in seeds]
    names = run_campaign(studies, storage=storage, seeds=seeds, progress=progress, **options)
    report = analyze(storage, names, out, formats, progress=progress)
    return CampaignOutcome(studies=names, table=best_table(storage, names), report=report,
                           dashboard=dashboard_command(storage, str((out / ARTIFACT_DIR_NAME).resolve())),
                           trials=options["trials"], epochs=options["epochs"], seeds=seeds,
                           seconds=time.perf_counter() - start)
