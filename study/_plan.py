"""A study's plan: everything a worker needs, checked in full before anything is created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution

import bioscale
from bioscale import datasets, rules, spaces
from bioscale.contract import StudyInfo
from bioscale.errors import UsageError
from bioscale.nets import PRESET_NAMES, arch_family, parse_spec, resolve_arch
from bioscale.rules import label
from bioscale.spaces.protocols import protocol_space
from bioscale.storages import StorageSpec
from bioscale.values import check_value

from ._samplers import check_pruner, check_sampler

STAGES = ("architecture", "tune")


def study_name(stage: str, dataset: str, arch: str, label: str, activation: str | None = None) -> str:
    """The default study name, `{stage}:{dataset}:{arch}:{label}`, plus `:{activation}` when one is chosen (nothing parses it back)."""
    return f"{stage}:{dataset}:{arch}:{label}" + (f":{activation}" if activation else "")


@dataclass(frozen=True)
class Plan:
    """One study: what to train, what to sample, what to hold fixed, where to store it."""

    stage: str
    protocol: str  # "paper", "extended", or "custom" (a named protocol changed with --set)
    rule: str
    schedule: str | None
    dataset: str
    arch: str  # as named in the study: preset name, spec string, or the architecture family
    arch_spec: str | None  # the spec trained (tune stage); None for the architecture stage
    arch_from: str | None  # the architecture study the spec came from ("@NAME")
    family: str
    epochs: int
    trials: int
    sampler: str
    pruner: str
    seed: int
    chance_patience: int
    space: dict[str, BaseDistribution]
    fixed: dict[str, Any]  # fixed with --set (the schedule is not in here)
    storage: StorageSpec
    study_name: str
    data_root: str | None = None
    val_size: float | int | None = None
    population: int = 1  # trials a worker trains at once as one batched model; not part of the study's identity

    @property
    def label(self) -> str:
        """The study's label (rule, plus schedule for target propagation)."""
        return label(self.rule, self.schedule)

    def trial_fixed(self) -> dict[str, Any]:
        """What every trial holds fixed: the --set values and the study's schedule."""
        return {**self.fixed, **({"schedule": self.schedule} if self.schedule else {})}

    def info(self, sampler_settings: dict[str, Any] | None = None) -> StudyInfo:
        """The study's user attributes (bioscale.contract)."""
        return StudyInfo(stage=self.stage, protocol=self.protocol, dataset=self.dataset, arch=self.arch, arch_spec=self.arch_spec,
                         arch_from=self.arch_from, family=self.family, rule=self.rule, schedule=self.schedule,
                         label=self.label, epochs=self.epochs, trials=self.trials, sampler=self.sampler,
                         pruner=self.pruner, seed=self.seed, chance_patience=self.chance_patience,
                         fixed=dict(self.fixed), space=spaces.space_to_json(self.space),
                         bioscale_version=bioscale.__version__, sampler_settings=sampler_settings)


def stage_defaults(stage: str, rule: str | None, schedule: str | None) -> tuple[str, str | None]:
    """(rule, schedule) with the stage's defaults: the architecture stage searches with DTP alternating, the paper's reference."""
    if rule is None:
        if stage != "architecture":
            raise UsageError("the tune stage needs --rule, e.g. --rule fa")
        return "dtp", schedule or "alternating"
    return rule, schedule


def split_rule_label(rule: str) -> tuple[str, str | None]:
    """`dtp-alternating` -> ('dtp', 'alternating') when `dtp` is a rule with that schedule; else (rule, None)."""
    if rule in rules.names():
        return rule, None
    base, _, schedule = rule.rpartition("-")
    if base and base in rules.names() and schedule in rules.get(base).schedules:
        return base, schedule
    rules.get(rule)  # raises the UsageError that lists the rules
    return rule, None


def check_common(*, stage: str, rule: str, schedule: str | None, dataset: str, epochs: int, trials: int,
                 sampler: str, pruner: str, chance_patience: int, overrides: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """Check the names and numbers of a study; returns (rule, schedule, overrides without the schedule)."""
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
    rule, from_label = split_rule_label(rule)
    overrides = dict(overrides)
    given = [s for s in (schedule, from_label, overrides.pop("schedule", None)) if s]
    if len(set(given)) > 1:
        raise UsageError(f"conflicting schedules: {', '.join(map(str, given))}")
    offered = rules.get(rule).schedules
    if offered:
        schedule = given[0] if given else rules.settings(rule).get("schedule")
        if schedule not in offered:
            raise UsageError(f"rule {rule!r} has no schedule {schedule!r}; choose one of: {', '.join(offered)}")
    elif given:
        raise UsageError(f"rule {rule!r} has no schedule (only target-propagation rules do); drop --schedule")
    else:
        schedule = None
    datasets.get(dataset)
    for name, value, low in (("epochs", epochs, 1), ("trials", trials, 1), ("chance_patience", chance_patience, 0)):
        if not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be a whole number >= {low} (got {value!r})")
    check_sampler(sampler)
    check_pruner(pruner, epochs)
    return rule, schedule, overrides


def search_space(stage: str, rule: str, schedule: str | None, dataset: str, arch: str, overrides: Mapping[str, Any],
                 protocol: str = "extended", activation: str | None = None,
                 ) -> tuple[str, dict[str, BaseDistribution], dict[str, Any]]:
    """(family, space left to sample, fixed values) for a stage under `protocol`, `activation` and the --set overrides."""
    defaults = {k: v for k, v in spaces.rule_defaults(rule).items() if k != "schedule"}
    held: dict[str, Any] = {}
    if stage == "architecture":
        if arch not in spaces.ARCH_FAMILIES:
            raise UsageError(f"the architecture stage searches a family: --arch {' or '.join(spaces.ARCH_FAMILIES)} (got {arch!r})")
        family, space = arch, spaces.architecture_space(arch, dataset)
    else:
        family = "" if arch.startswith("@") else arch_family(resolve_arch(arch, dataset) if arch not in PRESET_NAMES else arch)
        space, held = protocol_space(protocol, spaces.tuning_space(rule, schedule), defaults)
    if activation is not None:
        try:
            check_value("activation", activation)
        except ValueError as error:
            raise UsageError(str(error)) from None
        space.pop("activation", None)
        held["activation"] = activation
    space, fixed = spaces.apply_overrides(space, overrides, {**defaults, **held})
    fixed = {**{k: v for k, v in held.items() if k not in space}, **fixed}
    if stage == "architecture":
        _check_architecture_values(family, dataset, space, fixed)
    _check_rule_accepts(rule, schedule, space, fixed)
    return family, space, fixed


def _check_architecture_values(family: str, dataset: str, space: Mapping[str, BaseDistribution], fixed: Mapping[str, Any]) -> None:
    names = spaces.architecture_space(family, dataset)
    corners = [{}, {}]
    for name, dist in space.items():
        if name in names:
            values = list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]
            corners[0][name], corners[1][name] = min(values), max(values)
    for corner in corners:
        params = {**corner, **{k: v for k, v in fixed.items() if k in names}}
        try:
            parse_spec(spaces.build_arch(family, dataset, params))
        except UsageError as error:
            raise UsageError(f"bad architecture values {params}: {error}") from None


def _check_rule_accepts(rule: str, schedule: str | None, space: Mapping[str, BaseDistribution], fixed: Mapping[str, Any]) -> None:
    """Build the rule once on a tiny net with the fixed settings (and each choice of every categorical one)."""
    import torch

    from bioscale.nets import Net

    known = rules.settings(rule)
    base = {k: v for k, v in fixed.items() if k in known}
    if schedule:
        base["schedule"] = schedule
    trials = [base] + [{**base, name: choice} for name, dist in space.items()
                       if name in known and isinstance(dist, CategoricalDistribution) for choice in dist.choices]
    for settings in trials:
        try:
            settings = rules.coerce_settings(rule, settings)
            with torch.random.fork_rng():
                rules.get(rule)(Net("2*fc:4", (1, 4, 4), 3, fixed.get("activation", "tanh")), **settings)
        except UsageError:
            raise
        except Exception as error:  # the rule's own checks (ValueError, torch.optim's range checks)
            shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k in fixed or k in space or k == "schedule")
            raise UsageError(f"rule {rule!r} refuses {shown or 'its defaults'}: {str(error).splitlines()[0]}") from None
