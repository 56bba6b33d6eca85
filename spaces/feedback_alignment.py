"""FA, DFA, sign-symmetry and its frSF/brSF variants, KP and WM: the forward Adam optimiser, and the learned feedback's own.

FA, DFA and the sign-symmetry rules have only the forward optimiser to tune: their feedback is
fixed (random, or sign(W) with fixed or redrawn magnitudes). KP adds its decay; WM its mirror's
learning rate, noise scale, decay and steps.
"""

from ._common import pick

_FORWARD = ("forward_lr", "forward_beta2", "forward_eps")
RULES = ("fa", "dfa", "sign-symmetry", "sign-symmetry-frsf", "sign-symmetry-brsf", "kp", "wm")
SPACES = {rule: pick(*_FORWARD) for rule in RULES}
SPACES["kp"] = pick(*_FORWARD, "decay")
SPACES["wm"] = pick(*_FORWARD, "mirror_lr", "mirror_sigma", "mirror_decay", "mirror_steps")
HELD = ("forward_beta1",)
