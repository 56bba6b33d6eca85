"""DDTP-linear and L-DRL against DTP (parallel) on MNIST, each at its defaults, measured in one run.

    python benchmarks/bench_new_rules_tp.py [--data-root DIR] [--rules dtp,ddtp,ldrl] [--seeds 0,1,2]
        [--epochs 5] [--arch fc] [--train-size N] [--device auto|cpu|cuda:N] [--threads N]

The issue's comparison (issue 25): 5 x fc 256 tanh, 5 epochs, each rule's default settings in
the parallel schedule, median test error over seeds 0-2. Each rule trains its seeds as one
population (bioscale.population: each member trains exactly as it would alone; the members share
one minibatch order, drawn from seed 0). The test error is read at each member's epoch of best
validation error, as the studies do (the last epoch's beside it). `--train-size N` keeps the
first N training examples (a reduced run on a slow machine; the table says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import time

import torch

from bioscale import rules
from bioscale.data import load
from bioscale.devices import resolve_device
from bioscale.nets import build_net
from bioscale.run_config import RunConfig
from bioscale.train import fit

# Independent reference (issue 25: same net and budget, Adam lr 1e-3, last-epoch test error, median of seeds 0-2).
REFERENCE = {"dtp": 3.64, "ddtp": 3.01, "ldrl": 2.87}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("BIOSCALE_DATA", "../shared/data"))
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--arch", default="fc")
    parser.add_argument("--rules", default="dtp,ddtp,ldrl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=None, help="keep only the first N training examples")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load(args.dataset, root=args.data_root, device=device)
    if args.train_size:
        data = dataclasses.replace(data, train_x=data.train_x[:args.train_size], train_y=data.train_y[:args.train_size])
    print(f"# DDTP-linear and L-DRL vs DTP parallel, {datetime.date.today()}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"# {args.dataset} {args.arch}, {len(data.train_x)} training examples, {args.epochs} epochs, batch {args.batch_size}, "
          f"seeds {args.seeds} (one population per rule), defaults, parallel schedule\n")
    print("| rule | test error at best val. epoch, per seed (%) | median (%) | last epoch median (%) | reference (%) | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.rules.split(","):
        net = build_net(args.arch, args.dataset, data.input_shape, data.n_classes, seeds=seeds).to(device)
        settings = {"schedule": "parallel"} if "schedule" in rules.settings(name) else {}
        rule = rules.create(name, net, **settings)
        start = time.perf_counter()
        results = fit(rule, data, RunConfig(name, epochs=args.epochs, batch_size=args.batch_size, data_seed=0,
                                            chance_patience=0), progress=False)
        seconds = time.perf_counter() - start
        best = [100 * r.best.test_error if r.history else float("nan") for r in results]
        last = [100 * r.history[-1].test_error if r.history else float("nan") for r in results]
        reference = REFERENCE.get(name)
        print(f"| {name} | {', '.join(f'{e:.2f}' for e in best)} | {statistics.median(best):.2f} | "
              f"{statistics.median(last):.2f} | {'' if reference is None else f'{reference:.2f}'} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
