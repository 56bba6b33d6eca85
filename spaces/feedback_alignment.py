"""FA, sign-symmetry and DFA: only the forward Adam optimiser to tune; the feedback is fixed (random, or sign(W))."""

from ._common import pick

RULES = ("fa", "dfa", "sign-symmetry")
SPACES = {rule: pick("forward_lr", "forward_beta2", "forward_eps") for rule in RULES}
HELD = ("forward_beta1",)
