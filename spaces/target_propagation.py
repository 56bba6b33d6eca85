"""TP, DTP, SDTP, AO-SDTP, DDTP-linear and L-DRL: forward and inverse Adam, the inverse noise σ, and each rule's own.

Each study of this family runs one schedule (its label is `{rule}-{schedule}`), so `schedule`
is never sampled: it is fixed for the study. The alternating schedule adds its period.
"""


from ._common import DDTP_SIGMA, pick


_ADAM = ("forward_lr", "forward_beta2", "forward_eps", "inverse_lr", "inverse_beta2", "inverse_eps")
SPACES = {
    "tp": pick(*_ADAM, "sigma"),  # vanilla TP: targets through inverses only
    "dtp": pick(*_ADAM, "alpha", "sigma"),  # α: the penultimate layer's gradient step (Eq. 2)
    "sdtp": pick(*_ADAM, "sigma"),  # no gradient anywhere, so no α
    "ao-sdtp": pick(*_ADAM, "sigma", "aux_size"),  # Eq. 3: the auxiliary output's size
    "ddtp": {**pick(*_ADAM, "lam"), "sigma": DDTP_SIGMA},  # λ: the output target's step
    "ldrl": pick(*_ADAM, "sigma", "beta", "inverse_iterations"),  # β: the output target's step; K feedback steps
}
# Settings sampled only under one schedule.
BY_SCHEDULE = {"alternating": pick("alternation_period"), "parallel": {}}
# Held at the rule's default: β1 (fixed in the paper), the study's schedule, and the inverse
# loss, which follows the paper per rule (noise-preserving for DTP, de-noising for SDTP).
# L-DRL's per-layer values replace single searched ones by hand (the paper's CIFAR-10 settings), never by search.
HELD = ("forward_beta1", "inverse_beta1", "schedule", "inverse_loss",
        "layer_inverse_iterations", "layer_sigma", "layer_inverse_lr")
