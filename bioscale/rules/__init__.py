"""Learning rules, one module per family, found by name: `bioscale.rules.get("dtp")`."""

from .base import Rule, coerce_settings, convert, create, cross_entropy, get, names, settings

__all__ = ["Rule", "coerce_settings", "convert", "create", "cross_entropy", "get", "names", "settings"]
