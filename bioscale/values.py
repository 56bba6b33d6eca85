"""Setting values in one place: the limits every setting must keep, and the one converter from command-line strings.

Rules check their settings against `LIMITS` when built, the search spaces check `--set` values
against them before a study exists, and both convert strings with `convert`.
"""

from __future__ import annotations

import math
from typing import Any

# What a value must satisfy to be trained at all, whatever a search range says: (low, high,
# low_inclusive, high_inclusive); None leaves a side open.
_POSITIVE = (0.0, None, False, False)
_UNIT = (0.0, 1.0, True, False)
_COUNT = (1, None, True, False)
LIMITS: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "forward_lr": _POSITIVE, "inverse_lr": _POSITIVE,
    "forward_beta1": _UNIT, "forward_beta2": _UNIT, "inverse_beta1": _UNIT, "inverse_beta2": _UNIT,
    "forward_eps": (0.0, 1.0, False, True), "inverse_eps": (0.0, 1.0, False, True),
    "alpha": (0.0, None, True, False), "sigma": (0.0, None, True, False),
    "aux_size": _COUNT, "alternation_period": (0, None, True, False),
    "lam": (0.0, None, True, False), "beta": (0.0, None, True, False), "inverse_iterations": _COUNT,
    "batch_size": _COUNT, "epochs": _COUNT,
    # Kolen-Pollack and weight mirrors (bioscale.rules.learned_feedback)
    "decay": (0.0, None, True, False),
    "mirror_lr": _POSITIVE, "mirror_sigma": _POSITIVE, "mirror_decay": _POSITIVE, "mirror_steps": _COUNT,
    # EP and CHL (bioscale.rules.energy_based): settling steps, the free phase's tolerance, CHL's feedback strength
    "t_free": _COUNT, "t_nudge": _COUNT, "tolerance": (0.0, None, True, False), "gamma": _POSITIVE,
    "init_scale": _POSITIVE,
    # architecture stage
    "depth": _COUNT, "width": _COUNT, "channels": _COUNT, "kernel": _COUNT,
}
# Settings that count something: whole numbers only.
WHOLE = frozenset({"aux_size", "alternation_period", "inverse_iterations", "mirror_steps", "t_free", "t_nudge", "batch_size", "epochs", "depth", "width", "channels", "kernel"})
# Settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "activation": ("tanh", "relu"),
    # EP and CHL: the hidden states' activation (the net's own, or the papers' hard sigmoid), EP's output cost
    "state_activation": ("net", "hard-sigmoid"), "cost": ("squared-error", "cross-entropy")}


def check_value(name: str, value: object) -> None:
    """Raise ValueError when `value` is not a usable value of setting `name` (its limits and choices)."""
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"{name}={value!r} is not one of: {', '.join(map(str, CHOICES[name]))}")
    if name not in LIMITS or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high, low_in, high_in = LIMITS[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}={value} is not a finite number")
    if name in WHOLE and int(value) != value:
        raise ValueError(f"{name}={value} is not a whole number")
    too_low = low is not None and (value < low or (value == low and not low_in))
    too_high = high is not None and (value > high or (value == high and not high_in))
    if too_low or too_high:
        raise ValueError(f"{name}={value} is out of range: it must lie in {describe_limits(name)}")


def describe_limits(name: str) -> str:
    """A setting's limits in interval notation, e.g. '[0, 1)'."""
    low, high, low_in, high_in = LIMITS[name]
    left = "(-inf" if low is None else f"{'[' if low_in else '('}{low:g}"
    right = "inf)" if high is None else f"{high:g}{']' if high_in else ')'}"
    return f"{left}, {right}"


def convert(name: str, value: Any, example: Any) -> Any:
    """`value` (often a command-line string) as the type of `example` (bool, int, float or str).

    Non-strings, and strings for str or untyped (None) settings, come back unchanged; a string
    that is not a value of that type raises ValueError naming the setting.
    """
    if not isinstance(value, str) or isinstance(example, str) or example is None:
        return value
    if isinstance(example, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name}={value!r} is not true or false")
        return value.lower() in ("true", "1")
    if isinstance(example, (int, float)):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
        if isinstance(example, int):
            if not number.is_integer():
                raise ValueError(f"{name}={value!r} is not a whole number")
            return int(number)
        return number
    return value
