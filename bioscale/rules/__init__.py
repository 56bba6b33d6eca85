"""Learning rules, one module per family, found by name: `bioscale.rules.get("dtp")`.

Every public module of this package is imported on the first look-up, so a new rule module
registers its rules without being listed anywhere.
"""

from .base import GradientRule, Rule, coerce_settings, convert, create, cross_entropy, get, label, names, settings

__all__ = ["GradientRule", "Rule", "coerce_settings", "convert", "create", "cross_entropy", "get", "label", "names", "settings"]
