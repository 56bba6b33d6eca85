"""What every family's space is made of: one catalogue of distributions, keyed by setting name.

The ranges start from the paper's Table 4 and are widened to cover the best values its Table 5
reports (learning rates up to about 1e-2, β2 = 0.95, ε = 1e-3, σ up to 0.37), so the published
ranges are a floor, not a ceiling. β1 stays fixed at 0.9, as in the paper.
"""

from __future__ import annotations

import math

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

LEARNING_RATE = FloatDistribution(1e-5, 1e-2, log=True)  # Table 4: [1e-5, 3e-4]
BETA2 = CategoricalDistribution((0.95, 0.99, 0.999))  # Table 4: {0.99, 0.999}
EPS = CategoricalDistribution((1e-8, 1e-6, 1e-4, 1e-3))  # Table 4: {1e-4, 1e-6, 1e-8}

# Every hyperparameter bioscale knows how to search, in the paper's words. A family module picks
# the names it samples from here; a rule no family module claims samples every setting of its
# constructor that appears here.
CATALOGUE: dict[str, BaseDistribution] = {
    "forward_lr": LEARNING_RATE,
    "forward_beta2": BETA2,
    "forward_eps": EPS,
    "inverse_lr": LEARNING_RATE,
    "inverse_beta2": BETA2,
    "inverse_eps": EPS,
    "alpha": FloatDistribution(0.01, 0.2),  # Table 4
    "sigma": FloatDistribution(0.01, 0.4),  # Table 4: [0.01, 0.3]; Table 5 has 0.37
    "aux_size": IntDistribution(64, 1024, log=True),  # the paper used 512 on CIFAR (its Figure 4)
    "alternation_period": CategoricalDistribution((0, 1, 10, 100)),  # steps; 0 = whole epochs (the paper)
}

# Training arguments every tuning space samples; they go to `train(...)`, not to the rule.
TRAINING: dict[str, BaseDistribution] = {
    "activation": CategoricalDistribution(("tanh", "relu")),  # the paper used tanh only
    "batch_size": CategoricalDistribution((32, 64, 128, 256)),
}
TRAINING_DEFAULTS = {"activation": "tanh", "batch_size": 128}

# What a value must satisfy to be trained at all, whatever the search range: (low, high,
# low_inclusive, high_inclusive); None leaves a side open. A value fixed with --set may lie
# outside the search range (on purpose), but never outside these.
_POSITIVE = (0.0, None, False, False)
_UNIT = (0.0, 1.0, True, False)
LIMITS: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "forward_lr": _POSITIVE, "inverse_lr": _POSITIVE,
    "forward_beta1": _UNIT, "forward_beta2": _UNIT, "inverse_beta1": _UNIT, "inverse_beta2": _UNIT,
    "forward_eps": (0.0, 1.0, False, True), "inverse_eps": (0.0, 1.0, False, True),
    "alpha": _POSITIVE, "sigma": (0.0, None, True, False),
    "aux_size": (1, None, True, False), "alternation_period": (0, None, True, False),
    "batch_size": (1, None, True, False),
    # architecture stage
    "depth": (1, None, True, False), "width": (1, None, True, False),
    "channels": (1, None, True, False), "kernel": (1, None, True, False),
}
CHOICES: dict[str, tuple[str, ...]] = {"activation": TRAINING["activation"].choices}


def pick(*names: str) -> dict[str, BaseDistribution]:
    """The catalogue's distributions for `names`, in that order."""
    return {name: CATALOGUE[name] for name in names}


def check_value(name: str, value: object) -> None:
    """Raise ValueError when `value` is not a usable value of `name` (limits and choices)."""
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(map(str, CHOICES[name]))}")
    if name not in LIMITS or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high, low_in, high_in = LIMITS[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}={value} is not a finite number")
    too_low = low is not None and (value < low or (value == low and not low_in))
    too_high = high is not None and (value > high or (value == high and not high_in))
    if too_low or too_high:
        raise ValueError(f"{name}={value} is out of range: it must lie in {describe_limits(name)}")


def describe_limits(name: str) -> str:
    """A limit in interval notation, e.g. '[0, 1)'."""
    low, high, low_in, high_in = LIMITS[name]
    left = "(-inf" if low is None else f"{'[' if low_in else '('}{low:g}"
    right = "inf)" if high is None else f"{high:g}{']' if high_in else ')'}"
    return f"{left}, {right}"
