"""fANOVA time over 1,000 random-search trials × 6 parameters: optuna-fast-fanova against Optuna's own evaluator.

Run: python benchmarks/bench_fanova.py [--trials 1000] [--seeds 4] [--trees 32] [--skip-optuna] [--bare]
Prints wall and CPU time of `bioscale.analysis.fanova_importance` (log-scale re-expression, every
seed): optuna-fast-fanova; Optuna's evaluator in this process (jobs 1); Optuna's evaluator with its
default of one worker process per core (jobs auto). CPU time is what a quiet machine's wall time
would be for a single process; wall time depends on what else runs.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import optuna

from bioscale.analysis.statistics.importance import FANOVA_SEEDS, FANOVA_TREES, fanova_importance, fast_fanova_available, quiet_optuna
from bioscale.analysis.synthetic import PAPER_SPACE, Curve, contract_trial, sample


def make_trials(n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """n trials over the six-parameter paper space; the error depends on log10(forward_lr) and activation."""
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        params = sample(PAPER_SPACE, rng)
        error = 0.05 + 0.02 * (math.log10(params["forward_lr"]) + 3.5) ** 2 + 0.03 * (params["activation"] == "relu")
        trials.append(contract_trial(params, PAPER_SPACE, min(1.0, error + 0.005 * rng.normal() ** 2), curve=Curve(epochs=2),
                                     rng=rng))
    return trials


def bare_call(trials: list[optuna.trial.FrozenTrial], fast: bool) -> float:
    """Seconds for one evaluator call with Optuna's defaults (64 trees), on the raw (linear-scale) trials."""
    with quiet_optuna():
        study = optuna.create_study()
        study.add_trials(trials)
    if fast:
        from optuna_fast_fanova import FanovaImportanceEvaluator
    else:
        from optuna.importance import FanovaImportanceEvaluator
    start = time.perf_counter()
    with quiet_optuna():
        FanovaImportanceEvaluator(seed=0).evaluate(study)
    return time.perf_counter() - start


def timed(trials: list[optuna.trial.FrozenTrial], evaluator: str, seeds: int, trees: int, n_jobs: int | None) -> str:
    """One table row: wall and CPU seconds (this process only) of fanova_importance, and the top importances."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fanova_importance(trials, seeds=seeds, n_trees=trees, evaluator=evaluator, n_jobs=n_jobs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    jobs = "auto" if n_jobs is None else str(n_jobs)
    top = ", ".join(f"{p} {m:.2f}±{s:.2f}" for p, m, s in result.overall.ranked()[:2])
    return f"{result.evaluator:<20} {jobs:>5} {wall:>9.2f} {cpu:>9.2f}  {top}"


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=FANOVA_SEEDS)
    parser.add_argument("--trees", type=int, default=FANOVA_TREES)
    parser.add_argument("--skip-optuna", action="store_true", help="skip the slow fallback evaluator")
    parser.add_argument("--bare", action="store_true", help="also time one bare evaluator call with Optuna's defaults")
    args = parser.parse_args()
    trials = make_trials(args.trials)
    print(f"{args.trials} trials x {len(PAPER_SPACE)} params, {args.seeds} seeds x {args.trees} trees, "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'evaluator':<20} {'jobs':>5} {'wall (s)':>9} {'CPU (s)':>9}  top importances")
    if fast_fanova_available():
        print(timed(trials, "fast", args.seeds, args.trees, None), flush=True)
    if not args.skip_optuna:
        print(timed(trials, "optuna", args.seeds, args.trees, 1), flush=True)
        print(timed(trials, "optuna", args.seeds, args.trees, None), flush=True)
    if args.bare:
        for fast in ([True] if fast_fanova_available() else []) + ([] if args.skip_optuna else [False]):
            print(f"bare call, {'optuna-fast-fanova' if fast else 'optuna'}, 64 trees: {bare_call(trials, fast):.2f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (CPU counts this process only; with jobs > 1 the "
          "work runs in worker processes)")


if __name__ == "__main__":
    main()
