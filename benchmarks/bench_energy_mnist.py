"""EP and CHL beside BP on real MNIST, one run: 784-512-10, a few epochs, every rule at its defaults.

    python benchmarks/bench_energy_mnist.py [--data-root ../shared/data] [--epochs 3] [--seed 0]
        [--rules bp,ep,chl] [--arch fc:512] [--train-size N] [--threads N]

The issue's target: EP's test error within 2 pp of BP's. Each rule trains one network (tanh, batch
128, MNIST's validation split held out) from the same seed and minibatch order; the test error is
read at the best-validation epoch, as the studies do, and at the last epoch beside it. The table
also gives each rule's seconds, so the settling's cost shows beside BP's. `--train-size N` keeps the
first N training examples (a reduced budget; the table says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
import warnings

import torch

from bioscale import rules as rule_registry
from bioscale.data import load
from bioscale.nets import build_net
from bioscale.run_config import RunConfig
from bioscale.train import fit


def main() -> None:
    """Train each rule on MNIST and print one markdown table of test errors and seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", default="bp,ep,chl")
    parser.add_argument("--arch", default="fc:512", help="784-512-10 by default (Laborieux et al.'s MNIST MLP)")
    parser.add_argument("--train-size", type=int, default=0, help="keep the first N training examples (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load("mnist", root=args.data_root)
    if args.train_size:
        data = dataclasses.replace(data, train_x=data.train_x[:args.train_size], train_y=data.train_y[:args.train_size])
    budget = f"{len(data.train_x)} training examples" + (" (reduced)" if args.train_size else "")
    print(f"MNIST {args.arch}, {args.epochs} epochs, seed {args.seed}, {budget}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| rule | test error at best val (%) | last epoch (%) | seconds |")
    print("|---|---|---|---|")
    found = {}
    for name in args.rules.split(","):
        net = build_net(args.arch, "mnist", data.input_shape, data.n_classes, seeds=(args.seed,))
        rule = rule_registry.create(name, net)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # unsettled free phases are counted below instead
            result, = fit(rule, data, RunConfig(name, epochs=args.epochs, data_seed=args.seed, chance_patience=0), progress=False)
        seconds = time.perf_counter() - start
        unsettled = getattr(rule, "unsettled", None)
        note = f" ({unsettled} unsettled free phases)" if unsettled else ""
        found[name] = result.best.test_error
        print(f"| {name}{note} | {100 * result.best.test_error:.2f} | {100 * result.history[-1].test_error:.2f} | "
              f"{seconds:.0f} |", flush=True)
    if "bp" in found and "ep" in found:
        gap = 100 * (found["ep"] - found["bp"])
        print(f"\nEP - BP: {gap:+.2f} pp (target: within 2 pp): {'met' if gap <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
