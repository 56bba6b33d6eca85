"""FA and DFA: only the forward Adam optimiser to tune; the feedback matrices are fixed at random."""

from ._common import pick

RULES = ("fa", "dfa")
SPACES = {rule: pick("forward_lr", "forward_beta2", "forward_eps") for rule in RULES}
HELD = ("forward_beta1",)
