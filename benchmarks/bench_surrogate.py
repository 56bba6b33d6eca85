"""Time of the surrogate analyses per study: forest fit, ablation path, local importance, interactions, figures.

Run: python benchmarks/bench_surrogate.py [--trials 30,60,200,1000] [--figures]
Each study is a random search over the six-parameter paper space (plus `batch_size` for
seven) with a default-configuration trial; the error depends on log10(forward_lr), sigma and the
activation, and runs diverge (chance level) when forward_lr is high, sooner with ReLU. Prints wall seconds per step and in all (one core).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from optuna.distributions import CategoricalDistribution
from optuna.storages import InMemoryStorage

from bioscale.analysis.analyses.surrogate import ablation_figure, interaction_figure, local_importance_figure
from bioscale.analysis.plots import save
from bioscale.analysis.statistics import ablation, interactions, local_importance
from bioscale.analysis.storage import select_studies
from bioscale.analysis.statistics.surrogate import fit_surrogate
from bioscale.analysis.synthetic import PAPER_SPACE, add_study

SPACE = {**PAPER_SPACE, "batch_size": CategoricalDistribution([32, 64, 128, 256])}
DEFAULT = {"forward_lr": 1e-4, "forward_beta2": 0.999, "forward_eps": 1e-8, "inverse_lr": 1e-3, "sigma": 0.1,
           "activation": "tanh", "batch_size": 128}


def record_of(n: int, seed: int = 0):
    """One planted study of `n` search trials (those with a high forward_lr diverge) and a default-configuration trial."""
    rng = np.random.default_rng(seed)

    def objective(p):
        return (0.05 + 0.02 * (math.log10(p["forward_lr"]) + 3.5) ** 2 + 0.1 * (p["sigma"] - 0.1) ** 2
                + 0.03 * (p["activation"] == "relu") + rng.normal(0, 0.003))

    storage = InMemoryStorage()
    add_study(storage, objective, label="dtp", space=SPACE, n_trials=n, epochs=2, default=DEFAULT, seed=seed,
              diverges=lambda p: p["forward_lr"] * (4 if p["activation"] == "relu" else 1) > 4e-3)
    (record,) = select_studies(storage, None)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="30,60,200,1000")
    parser.add_argument("--figures", action="store_true", help="also time drawing and saving the three PNGs")
    args = parser.parse_args()
    header = f"{'trials':>7} {'fit s':>7} {'path s':>7} {'LPI s':>7} {'pairs s':>8}" + (
        f" {'figures s':>10}" if args.figures else "") + f" {'total s':>8}  result"
    print(header)
    print("-" * len(header))
    for n in (int(t) for t in args.trials.split(",")):
        record = record_of(n)
        times = []
        start = time.perf_counter()
        fit = fit_surrogate(record.trials, 0.9)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        path = ablation.compute(record.trials, fit, record.rule, 0.9)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        lpi = local_importance.compute(record.trials, fit)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        pairs = interactions.compute(record.trials, fit)
        times.append(time.perf_counter() - start)
        if args.figures:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                for stem, figure in (("ablation", ablation_figure(path, "bench")),
                                     ("local-importance", local_importance_figure(lpi, "bench")),
                                     ("interaction", interaction_figure(pairs, "bench"))):
                    save(figure, Path(out) / stem, ("png",))
            times.append(time.perf_counter() - start)
        top = pairs.strongest
        r2 = fit.surrogate.oob_r2
        result = (f"OOB R² {r2:.2f}; path {'→'.join(s.param for s in path.steps[:2]) or path.status}; LPI top {lpi.ranked()[0][0]} "
                  f"{100 * lpi.ranked()[0][1]:.0f}%; pair {top.first}×{top.second} {100 * top.share:.1f}%")
        print(f"{n:>7} " + " ".join(f"{t:>{w}.2f}" for t, w in zip(times, (7, 7, 7, 8, 10))) + f" {sum(times):>8.2f}  {result}")


if __name__ == "__main__":
    main()
