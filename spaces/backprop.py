"""Backpropagation's tuning space: the forward Adam optimiser (Table 4)."""

from ._common import pick

# Per rule: the settings it samples (plus the training arguments every space samples).
SPACES = {"bp": pick("forward_lr", "forward_beta2", "forward_eps")}
# Settings deliberately held at the rule's default (the paper fixed Adam's β1 at 0.9).
HELD = ("forward_beta1",)
