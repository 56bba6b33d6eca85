"""The demo and the campaign end to end, one call each: tune every rule, evaluate each best configuration, analyse.

These sit on top of both `bioscale.study` (tuning, evaluation) and `bioscale.analysis` (figures,
report), as the command line does. A campaign is a `bioscale.spec.CampaignSpec` (built by
`campaign_spec` or `demo_campaign`); `run` carries it through tuning, evaluation and analysis, and
a notebook user builds and runs the same object `bioscale demo` and `bioscale campaign` do.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import defaults
from .formats import percent
from .spec import CampaignSpec, LaunchSpec, StudySpec, campaign_studies

if TYPE_CHECKING:
    import pandas as pd

DEMO = defaults.DEMO  # the demo's settings live in the defaults table; importable here as before


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
    reduced: str = ""  # studies run at a smaller budget than the rest (the demo's energy-based rules), in words
    design: str = ""  # the first study's search design, in words

    def summary(self) -> str:
        """The lines `bioscale demo` and `bioscale campaign` print at the end."""
        columns = ["dataset", "arch", "label", "activation", "trials_complete", "best_val_error", "evaluated_test_mean"]
        return "\n".join([
            f"\nbest errors ({self.trials} configurations x {self.epochs} epochs per study"
            f"{' (' + self.design + ')' if self.design else ''}, evaluated over seeds {','.join(map(str, self.seeds))}{'; ' + self.reduced if self.reduced else ''}):",
            self.table[columns].to_string(index=False, float_format=percent),
            f"\nreport: {self.report.resolve()}",
            f"html:   {self.report.with_suffix('.html').resolve()}",
            f"dashboard: {shlex.join(self.dashboard)}",
            f"took {self.seconds:.0f} s"])


def campaign_folder(dataset: str, arch: str) -> Path:
    """The default output folder of a campaign, e.g. `campaign-mnist-fc` (spec strings made file-name safe)."""
    return Path(f"campaign-{dataset}-{arch.strip('@').replace(':', '-').replace('*', 'x').replace(',', '_')}")


def demo_study() -> StudySpec:
    """The study every demo study is: digits, the paper's search space, Sobol draws halved inside one population each."""
    demo = defaults.DEMO
    return StudySpec(dataset=demo["dataset"], trials=demo["trials"], epochs=demo["epochs"], sampler=demo["sampler"],
                     pruner=demo["pruner"], protocol=demo["protocol"], chance_patience=demo["chance_patience"],
                     population=demo["population"])


def demo_campaign(template: StudySpec | None = None, *, out: str | Path = defaults.DEMO["out"],
                  seeds: Sequence[int] = defaults.DEMO["seeds"], rules: Sequence[str] | None = None,
                  activations: Sequence[str] = defaults.DEMO["activations"], side_by_side: int | None = None) -> CampaignSpec:
    """The demo as a campaign: `template` (default `demo_study()`) for every rule and schedule on the fc and lc presets,
    once per activation; studies side by side (default: one per core), stored under `out` unless the template names a storage."""
    out = Path(out)
    template = template or demo_study()
    template = replace(template, storage=template.storage or f"sqlite:///{(out / 'bioscale.db').resolve()}")
    studies = reduce_demo(campaign_studies(template, defaults.DEMO["archs"], rules, activations))
    return CampaignSpec(studies=studies, seeds=tuple(seeds), side_by_side=side_by_side or os.cpu_count() or 1,
                        out=str(out), formats=defaults.DEMO["formats"])


def reduce_demo(studies: Sequence[StudySpec], reduced: dict | None = None) -> tuple[StudySpec, ...]:
    """The demo's studies with the costly rules (`defaults.DEMO_REDUCED`) kept to its architectures, trials and epochs."""
    reduced = reduced or defaults.DEMO_REDUCED
    return tuple(replace(s, trials=min(s.trials, reduced["trials"]), epochs=min(s.epochs, reduced["epochs"]))
                 if s.rule in reduced["rules"] else s
                 for s in studies if s.rule not in reduced["rules"] or s.arch in reduced["archs"])


def reduced_budget(campaign: CampaignSpec) -> str:
    """The studies of `campaign` whose trials or epochs differ from its first study's, in words ('' when none)."""
    first = campaign.studies[0]
    by_budget: dict[tuple[int, int], list[str]] = {}
    for s in campaign.studies:
        if (s.trials, s.epochs) != (first.trials, first.epochs):
            names = by_budget.setdefault((s.trials, s.epochs), [])
            if f"{s.label} on {s.arch}" not in names:
                names.append(f"{s.label} on {s.arch}")
    return "; ".join(f"{', '.join(names)}: {t} trials x {e} epochs" for (t, e), names in by_budget.items())


def demo(campaign: CampaignSpec | None = None, *, progress: bool = True) -> CampaignOutcome:
    """Run the demo (`demo_campaign()` unless given another): tune, evaluate each best configuration, report.

    Studies run side by side, one per worker process (default every core).
    """
    from .devices import resolve_devices

    campaign = (campaign or demo_campaign()).checked()
    for spec in campaign.studies:
        resolve_devices(spec.devices)  # a bad device is refused before the output folder exists
    Path(campaign.out).mkdir(parents=True, exist_ok=True)
    return run(campaign, progress=progress)


def campaign_spec(dataset: str, arch: str, template: StudySpec | None = None, *, rules: Sequence[str] | None = None,
                  activations: Sequence[str] | None = None, seeds: Sequence[int] = defaults.CAMPAIGN["seeds"],
                  out: str | Path | None = None, formats: Sequence[str] = defaults.CAMPAIGN["formats"]) -> CampaignSpec:
    """The paper's protocol (by default) on one dataset and architecture: one study per rule and schedule (and per
    activation, given `activations`), each like `template` (default: the campaign defaults: random search, paper protocol)."""
    template = template or StudySpec(trials=defaults.CAMPAIGN["trials"], epochs=defaults.CAMPAIGN["epochs"],
                                     sampler=defaults.CAMPAIGN["sampler"], protocol=defaults.CAMPAIGN["protocol"])
    template = replace(template, dataset=dataset, storage=template.storage or defaults.STORAGE)
    studies = campaign_studies(template, [arch], rules, activations)
    return CampaignSpec(studies=studies, seeds=tuple(seeds), out=str(out if out is not None else campaign_folder(dataset, arch)),
                        formats=tuple(formats))


def run(campaign: CampaignSpec, *, progress: bool = True, launch: LaunchSpec | None = None, wait: bool = True,
        rerun: list[str] | None = None) -> CampaignOutcome | None:
    """Tune every study of `campaign`, evaluate each best configuration, analyse: the end-to-end flow of demo and campaign.

    With `launch` the studies and evaluations run as jobs (`bioscale.study.campaign_jobs`); with
    `wait=False` too, the jobs are only submitted and None is returned (rerun to finish).
    """
    from .analysis import ARTIFACT_DIR_NAME, analyze, best_table
    from .study import dashboard_command
    from .study._design import Design
    from .study.campaign import run_campaign

    campaign = campaign.checked()
    start = time.perf_counter()
    out = Path(campaign.out) if campaign.out is not None else Path(".")
    if launch is not None:
        from .study.campaign_jobs import run_campaign_jobs

        names = run_campaign_jobs(campaign, launch, wait=wait, say=print if progress else (lambda text: None), rerun=rerun)
        if names is None:
            return None
    else:
        names = run_campaign(campaign, progress=progress)
    report = analyze(campaign.storage, names, out, campaign.formats, progress=progress)
    first = campaign.studies[0]
    return CampaignOutcome(studies=names, table=best_table(campaign.storage, names), report=report,
                           dashboard=dashboard_command(campaign.storage, str((out / ARTIFACT_DIR_NAME).resolve())),
                           trials=first.trials, epochs=first.epochs, seeds=list(campaign.seeds),
                           seconds=time.perf_counter() - start, reduced=reduced_budget(campaign),
                           design=Design.of(first.checked()).words())
