"""Search spaces as data: name -> Optuna distribution, per rule family, in two stages.

- Tuning stage: `tuning_space(rule, schedule)`: the rule's optimiser and own settings, plus
  `activation` and `batch_size`. One module per rule family declares them (backprop,
  feedback_alignment, target_propagation); a rule that no module claims samples every
  constructor setting the shared catalogue knows.
  The energy-based rules (EP, CHL) are declared in `energy_based`.
- Architecture stage: `architecture_space(family, dataset)` and `build_arch(...)` -> a spec.
- `apply_overrides(space, {"name": "value"}, defaults)`: what `--set` does; a value fixes a
  parameter, `low:high` narrows a numeric range, `a,b,c` narrows the choices.

Nothing here touches a storage or trains; analysis reads spaces back with these functions.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping

from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json, json_to_distribution)

from bioscale import rules
from bioscale.errors import UsageError
from bioscale.values import LIMITS, check_value, convert

from . import architecture, backprop, energy_based, feedback_alignment, target_propagation
from ._common import CATALOGUE, TRAINING, TRAINING_DEFAULTS
from .protocols import PROTOCOLS

FAMILY_MODULES: tuple[ModuleType, ...] = (backprop, feedback_alignment, target_propagation, energy_based)
ARCH_FAMILIES = architecture.FAMILIES

__all__ = ["ARCH_FAMILIES", "CATALOGUE", "FAMILY_MODULES", "LIMITS", "PROTOCOLS", "TRAINING", "TRAINING_DEFAULTS",
           "apply_overrides", "architecture_space", "build_arch", "declared_space", "family_module", "held",
           "rule_defaults", "space_from_json", "space_to_json", "split_config", "tuning_space"]


def family_module(rule: str) -> ModuleType | None:
    """The spaces module that declares `rule`'s space, or None for a rule no module claims."""
    return next((m for m in FAMILY_MODULES if rule in m.SPACES), None)


def held(rule: str) -> tuple[str, ...]:
    """The settings of `rule` its space deliberately leaves at their defaults."""
    module = family_module(rule)
    return tuple(module.HELD) if module is not None else ("forward_beta1", "inverse_beta1", "schedule")


def declared_space(rule: str, schedule: str | None = None) -> dict[str, BaseDistribution]:
    """The rule's space exactly as its family module declares it (no check against the rule)."""
    module = family_module(rule)
    if module is None:
        known = rules.settings(rule)  # raises UsageError for an unknown rule
        own = {name: dist for name, dist in CATALOGUE.items() if name in known}
    else:
        own = dict(module.SPACES[rule])
        if schedule is not None:
            by_schedule = getattr(module, "BY_SCHEDULE", {})
            if schedule not in by_schedule:
                raise UsageError(f"rule {rule!r} has no schedule {schedule!r}; choose one of: {', '.join(by_schedule) or 'none'}")
            own.update(by_schedule[schedule])
    return {**TRAINING, **own}


def tuning_space(rule: str, schedule: str | None = None) -> dict[str, BaseDistribution]:
    """The tuning stage's space of `rule` (under `schedule`): only names the rule really has.

    For a registered rule, declared names that are not its settings are dropped (the test suite
    checks that none are); an unregistered rule of a family module gets the declared space.
    """
    space = declared_space(rule, schedule)
    if rule not in rules.names():
        if family_module(rule) is None:
            rules.get(rule)  # raises the UsageError that lists the rules
        return space
    known = rules.settings(rule)
    return {name: dist for name, dist in space.items() if name in TRAINING or name in known}


def architecture_space(family: str, dataset: str) -> dict[str, BaseDistribution]:
    """The architecture stage's space of `family` ('fc', 'lc' or 'conv') on `dataset`."""
    return architecture.space(family, dataset)


def build_arch(family: str, dataset: str, params: Mapping[str, Any]) -> str:
    """The spec string for one point of an architecture space."""
    return architecture.build(family, dataset, dict(params))


def rule_defaults(rule: str) -> dict[str, Any]:
    """Every name `--set` may fix for `rule` with its default: the training arguments and the rule's settings."""
    return {**TRAINING_DEFAULTS, **rules.settings(rule)}


def split_config(rule: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training arguments, rule settings) from a flat configuration; other keys are ignored."""
    known = rules.settings(rule)
    training = {k: v for k, v in config.items() if k in TRAINING_DEFAULTS}
    return training, {k: v for k, v in config.items() if k in known}


def space_to_json(space: Mapping[str, BaseDistribution]) -> dict[str, str]:
    """A space as {name: Optuna's JSON of the distribution}, for storing in a study."""
    return {name: distribution_to_json(dist) for name, dist in space.items()}


def space_from_json(data: Mapping[str, str]) -> dict[str, BaseDistribution]:
    """The inverse of `space_to_json`."""
    return {name: json_to_distribution(text) for name, text in data.items()}


def apply_overrides(space: Mapping[str, BaseDistribution], overrides: Mapping[str, Any],
                    defaults: Mapping[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
    """Apply `--set` overrides to a space: returns (the space left to sample, the fixed values).

    `NAME=VALUE` fixes NAME (removing it from the space); `NAME=LOW:HIGH` narrows (or sets) a
    numeric range; `NAME=A,B,C` narrows (or sets) the choices. NAME must be in `space` or in
    `defaults` (names that may be fixed without being searched, such as a rule's held
    settings). Unknown names and values outside a setting's limits raise UsageError.
    """
    out, fixed = dict(space), {}
    for name, raw in overrides.items():
        if name in space:
            kind = space[name]
        elif name in defaults:
            kind = defaults[name]
        else:
            allowed = sorted(set(space) | set(defaults))
            raise UsageError(f"unknown parameter {name!r} in --set; known here: {', '.join(allowed)}")
        text = str(raw).strip() if isinstance(raw, str) else raw
        try:
            if isinstance(text, str) and "," in text:
                values = [_convert(name, part.strip(), kind) for part in text.split(",") if part.strip()]
                for value in values:
                    check_value(name, value)
                if len(set(values)) < 2:
                    raise ValueError(f"{name}={text!r}: give two or more distinct choices, or one value")
                out[name] = CategoricalDistribution(tuple(dict.fromkeys(values)))
            elif isinstance(text, str) and ":" in text and _numeric(kind):
                low_text, _, high_text = text.partition(":")
                low, high = _convert(name, low_text, kind), _convert(name, high_text, kind)
                check_value(name, low)
                check_value(name, high)
                if not low < high:
                    raise ValueError(f"{name}={text!r}: a range needs LOW < HIGH")
                out[name] = _range(name, low, high, kind)
            else:
                value = _convert(name, text, kind)
                check_value(name, value)
                out.pop(name, None)
                fixed[name] = value
        except ValueError as error:
            raise UsageError(f"bad --set {name}={raw}: {error}") from None
    return out, fixed


def _numeric(kind: Any) -> bool:
    if isinstance(kind, (FloatDistribution, IntDistribution)):
        return True
    if isinstance(kind, CategoricalDistribution):
        return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in kind.choices)
    return isinstance(kind, (int, float)) and not isinstance(kind, bool)


def _example(kind: Any) -> Any:
    """A value whose type the parameter takes."""
    if isinstance(kind, CategoricalDistribution):
        return kind.choices[0]
    if isinstance(kind, (IntDistribution, FloatDistribution)):
        return kind.low
    return kind


def _convert(name: str, text: Any, kind: Any) -> Any:
    """A string as the parameter's type: that of its distribution's values, or of its default."""
    return convert(name, text, _example(kind))


def _range(name: str, low: Any, high: Any, kind: Any) -> BaseDistribution:
    log = (kind.log if isinstance(kind, (FloatDistribution, IntDistribution)) else name.endswith(("_lr", "_eps"))) and low > 0
    if isinstance(_example(kind), int) and isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=log)
    return FloatDistribution(float(low), float(high), log=log)
