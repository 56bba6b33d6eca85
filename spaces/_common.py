"""What every family's space is made of: one catalogue of distributions, keyed by setting name.

The ranges start from the paper's Table 4 and are widened to cover the best values its Table 5
reports (learning rates up to about 1e-2, β2 = 0.95, ε = 1e-3, σ up to 0.37), so the published
ranges are a floor, not a ceiling. β1 stays fixed at 0.9, as in the paper.
"""

from __future__ import annotations

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from bioscale import defaults, values

LEARNING_RATE = FloatDistribution(1e-5, 1e-2, log=True)  # Table 4: [1e-5, 3e-4]
BETA2 = CategoricalDistribution((0.95, 0.99, 0.999))  # Table 4: {0.99, 0.999}
EPS = CategoricalDistribution((1e-8, 1e-6, 1e-4, 1e-3))  # Table 4: {1e-4, 1e-6, 1e-8}

# Every hyperparameter bioscale knows how to search, in the paper's words. A family module picks
# the names it samples from here; a rule no family module claims samples every setting of its
# constructor that appears here.
CATALOGUE: dict[str, BaseDistribution] = {
    "forward_lr": LEARNING_RATE,
    "forward_beta2": BETA2,
    "forward_eps": EPS,
    "inverse_lr": LEARNING_RATE,
    "inverse_beta2": BETA2,
    "inverse_eps": EPS,
    "alpha": FloatDistribution(0.01, 0.2),  # Table 4
    "sigma": FloatDistribution(0.01, 0.4),  # Table 4: [0.01, 0.3]; Table 5 has 0.37
    "aux_size": IntDistribution(64, 1024, log=True),  # the paper used 512 on CIFAR (its Figure 4)
    "alternation_period": CategoricalDistribution((0, 1, 10, 100)),  # steps; 0 = whole epochs (the paper)
    # KP's decoupled decay, weights × (1 − forward_lr·decay) a step: Akrout et al.'s ImageNet runs (SGD, lr 0.1,
    # weight decay 1e-4) shrink by 1e-5 a step, as decay 1e-2 does at Adam's 1e-3; the range holds both values.
    "decay": FloatDistribution(1e-5, 1.0, log=True),
    # WM's mirror (stationary B = mirror_sigma²/(2·mirror_decay) W): the authors' code and its ports use noise
    # amplitudes of 0.1 to 1 and a decay (damping) of 0.5, with one mirror step per forward step.
    "mirror_lr": LEARNING_RATE,
    "mirror_sigma": FloatDistribution(0.05, 2.0, log=True),
    "mirror_decay": FloatDistribution(0.01, 2.0, log=True),
    "mirror_steps": IntDistribution(1, 4),
    # DDTP-linear's λ (Meulemans et al. 2020: 0.061 on MNIST; 0.1 in the reference run)
    "lam": FloatDistribution(0.01, 1.0, log=True),
    # L-DRL's β (Ernoult et al. 2022: 0.7) and its feedback steps per minibatch (their CIFAR-10 K: 20 to 55)
    "beta": FloatDistribution(0.05, 1.0, log=True),
    "inverse_iterations": IntDistribution(1, 64, log=True),
}
# DDTP-linear's σ: Meulemans et al.'s configurations use 0.006 to 0.1, below the paper's floor of 0.01.
DDTP_SIGMA = FloatDistribution(0.005, 0.4, log=True)

# Training arguments every tuning space samples; they go to `train(...)`, not to the rule.
TRAINING: dict[str, BaseDistribution] = {
    "activation": CategoricalDistribution(values.CHOICES["activation"]),  # the paper used tanh only
    "batch_size": CategoricalDistribution((32, 64, 128, 256)),
}
TRAINING_DEFAULTS = dict(defaults.TRAINING)

def pick(*names: str) -> dict[str, BaseDistribution]:
    """The catalogue's distributions for `names`, in that order."""
    return {name: CATALOGUE[name] for name in names}
