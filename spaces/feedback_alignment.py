"""FA, DFA, sign-symmetry and its frSF/brSF variants, KP and WM: the forward Adam optimiser, and the learned feedback's own.

FA, DFA and the sign-symmetry rules have only the forward optimiser to tune: their feedback is
fixed (random, or sign(W) with fixed or redrawn magnitudes). KP adds its decay; WM its mirror's
learning rate, noise scale, decay and steps.
"""

from bioscale import catalogue

from ._common import pick

_FORWARD = ("forward_lr", "forward_beta2", "forward_eps")
# Every rule of the family (bioscale.catalogue) samples the forward Adam settings; KP and WM add their own.
SPACES = {rule: pick(*_FORWARD) for rule in catalogue.family_rules("feedback alignment")}
SPACES["kp"] = pick(*_FORWARD, "decay")
SPACES["wm"] = pick(*_FORWARD, "mirror_lr", "mirror_sigma", "mirror_decay", "mirror_steps")
HELD = ("forward_beta1",)
