"""A study's plan: everything a worker needs, checked in full before anything is created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution

import bioscale
from bioscale import defaults, rules, spaces
from bioscale.contract import ARCHITECTURE, StudyInfo
from bioscale.errors import UsageError, first_line
from bioscale.nets import PRESET_NAMES, arch_family, parse_spec, resolve_arch
from bioscale.spaces.protocols import protocol_space
from bioscale.spec import StudySpec, label, study_name
from bioscale.storages import StorageSpec
from bioscale.values import check_value

from ._samplers import check_pruner

__all__ = ["Plan", "StudySpec", "check_spec", "label", "search_space", "study_name"]


@dataclass(frozen=True)
class Plan:
    """One study resolved: its checked specification, plus what was derived from it (space, fixed values, names, storage)."""

    spec: StudySpec  # checked: the rule label split into rule and schedule
    protocol: str  # "paper", "extended", or "custom" (a named protocol changed with --set)
    arch: str  # as named in the study: preset name, spec string, or the architecture family
    arch_spec: str | None  # the spec trained (tune stage); None for the architecture stage
    arch_from: str | None  # the architecture study the spec came from ("@NAME")
    family: str
    space: dict[str, BaseDistribution]
    fixed: dict[str, Any]  # fixed with --set (the schedule is not in here)
    storage: StorageSpec
    study_name: str

    # The specification's fields a worker reads, by their names.
    stage = property(lambda self: self.spec.stage, doc="architecture or tune")
    rule = property(lambda self: self.spec.rule, doc="the learning rule")
    schedule = property(lambda self: self.spec.schedule, doc="the target-propagation schedule, else None")
    dataset = property(lambda self: self.spec.dataset, doc="the dataset")
    epochs = property(lambda self: self.spec.epochs, doc="epochs per trial")
    trials = property(lambda self: self.spec.trials, doc="the trial budget this run asks for")
    sampler = property(lambda self: self.spec.sampler, doc="tpe or random")
    pruner = property(lambda self: self.spec.pruner, doc="the pruner's name")
    seed = property(lambda self: self.spec.seed, doc="seeds the sampler, the minibatch order and each trial")
    chance_patience = property(lambda self: self.spec.chance_patience, doc="epochs at chance before a trial stalls")
    data_root = property(lambda self: self.spec.data_root, doc="the dataset folder")
    val_size = property(lambda self: self.spec.val_size, doc="the validation split")
    population = property(lambda self: self.spec.population, doc="trials a worker trains at once")

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


def check_spec(spec: StudySpec) -> tuple[StudySpec, dict[str, Any]]:
    """(the checked spec, its --set overrides without the schedule): the spec's own checks, then those that need the registries."""
    spec = spec.checked()
    rules.get(spec.rule)
    offered = rules.get(spec.rule).schedules
    if spec.schedule is not None and spec.schedule not in offered:
        raise UsageError(f"rule {spec.rule!r} has no schedule {spec.schedule!r}; choose one of: {', '.join(offered) or 'none'}")
    check_pruner(spec.pruner, spec.epochs)
    return spec, {k: v for k, v in spec.overrides.items() if k != "schedule"}


def search_space(spec: StudySpec, overrides: Mapping[str, Any]) -> tuple[str, dict[str, BaseDistribution], dict[str, Any]]:
    """(family, space left to sample, fixed values) of a checked spec: its stage under its protocol, activation and `overrides`."""
    stage, rule, schedule, dataset, arch = spec.stage, spec.rule, spec.schedule, spec.dataset, spec.arch
    protocol, activation = spec.protocol, spec.activation
    defaults = {k: v for k, v in spaces.rule_defaults(rule).items() if k != "schedule"}
    held: dict[str, Any] = {}
    if stage == ARCHITECTURE:
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
    if stage == ARCHITECTURE:
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
                rules.get(rule)(Net("2*fc:4", (1, 4, 4), 3, fixed.get("activation", defaults.ACTIVATION)), **settings)
        except UsageError:
            raise
        except Exception as error:  # the rule's own checks (ValueError, torch.optim's range checks)
            shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k in fixed or k in space or k == "schedule")
            raise UsageError(f"rule {rule!r} refuses {shown or 'its defaults'}: {first_line(error)}") from None
