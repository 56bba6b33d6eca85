"""EP and CHL: the forward Adam optimiser, the nudge (EP's β) or feedback strength (CHL's γ), and the settling.

Ranges from the papers: Laborieux et al. 2021 settle 784-512-10 in T_free = 30 free and T_nudge = 10
nudged steps at β = 0.1 (Adam 5e-4); Ernoult et al. 2019 use T 40 / K 15 at β 0.1, and T 100 / K 20 at
β 0.5 on two hidden layers. The settling steps are integers; β, γ and the initial weights' scale are
searched on log scales; whether EP nudges symmetrically is a choice (`extended` only: under `paper`
only the forward Adam settings and β or γ, the output's step as α is for DTP, are sampled).
"""

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ._common import pick

_FORWARD = pick("forward_lr", "forward_beta2", "forward_eps")
_SETTLING = {
    "t_free": IntDistribution(5, 60, log=True),
    "t_nudge": IntDistribution(2, 30, log=True),
    "init_scale": FloatDistribution(0.1, 1.0, log=True),  # × the Glorot weights: small keeps the settling contractive
    "state_activation": CategoricalDistribution(("net", "hard-sigmoid")),
}
SPACES = {
    "ep": {**_FORWARD, "beta": FloatDistribution(0.01, 1.0, log=True), **_SETTLING,
           "symmetric": CategoricalDistribution((True, False)),
           "cost": CategoricalDistribution(("squared-error", "cross-entropy"))},
    "chl": {**_FORWARD, "gamma": FloatDistribution(0.01, 1.0, log=True), **_SETTLING},
}
# Held at the rule's default: β1 (fixed in the paper), and the free phase's early-stop tolerance (a cost, not a model).
HELD = ("forward_beta1", "tolerance")
