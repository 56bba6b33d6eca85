"""Trials per hour: K trials one after another vs one population of K, same configurations, same device, measured in one run.

    python benchmarks/bench_population.py [--datasets digits,mnist] [--data-root DIR] [--families fc,lc]
        [--rules bp,dtp,...] [--populations 1,4,16,64] [--epochs 1] [--steps N] [--device auto|cpu|cuda:N]
        [--threads N] [--rounds 3] [--min-time 2] [--sample 8] [--no-memory] [--json FILE] [--quick]

For each dataset, preset family, rule (TP-family rules in the parallel schedule) and K, the same K
configurations (forward_lr log-spaced over 1e-4..1e-2, member k seeded k) are trained two ways:

- sequential: K trials one after another, each a population of one (`train.build` + `train.fit`);
- population: one population of K (`train.build(RunConfig(seeds=..., settings={"forward_lr": [...]}))` + `train.fit`).

Both arms time the same thing: building the net and the rule, then `fit` for `--epochs` epochs,
including fit's per-epoch evaluation (train, validation and test error). Data loading is not
timed (it is cached, as in a study's worker). `--steps N` caps every epoch at N minibatches by
cutting the training set to N x batch size, and cuts the validation and test sets in the same
proportion, so evaluation keeps the share of an epoch it has at full size. The arms alternate
round by round (population first in even rounds, sequential first in odd ones) after an untimed
warm-up, and each arm's time is the median over `--rounds` rounds, or more where an arm has
run under `--min-time` seconds in all (cheap rows would otherwise rest on a few tenths of a
second of a noisy machine). The K = 1 rows time the same work twice: their distance from 1.00x
shows the noise. Where K > `--sample`, the
sequential arm times `--sample` of the K trials (spread over the learning-rate range) and scales
their mean to K; the table says on how many trials it was measured.

Memory per member: on CUDA, `torch.cuda.max_memory_allocated` above the state before building,
over building and two steps, for the population divided by K, next to one member alone. On the
CPU the same in a fresh process per (dataset, family, rule), as the peak resident size (VmHWM,
reset through /proc/self/clear_refs, glibc told to return large blocks at once). Also the exact
tensor bytes (parameters, optimizer moments and settings, rule state) per member. The check:
population peak <= K x one member's peak + one shared minibatch (within 2 % for a resident size,
which moves with the allocator), and tensor bytes <= K x one member's exactly; the table shows
population peak / (K x one + minibatch). Exit status 1 when a row fails it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

import bench_rules
from gpu_check import names
from bioscale import rules
from bioscale.data import Data, load
from bioscale.devices import resolve_device
from bioscale.errors import UsageError
from bioscale.nets import PRESET_NAMES
from bioscale.run_config import RunConfig
from bioscale.train import build, fit

LR_RANGE = (1e-4, 1e-2)
MEMORY_STEPS = 2
MAX_ROUNDS = 25  # --min-time adds rounds up to this many
# A peak resident size moves with the allocator (pages, heap arenas): about 1 % between a population and K
# members measured apart, where their tensors are exactly K times one member's (the profiler's allocation
# peak of a step agrees to 0.1 %). A K-fold copy of the shared minibatch would show: 4 % on MNIST FC, K = 16.
RSS_TOLERANCE = 0.02


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rule_variants(chosen: list[str] | None = None) -> list[tuple[str, str, dict]]:
    """(label, rule name, structural settings) of bench_rules: a rule with schedules in the parallel one, labelled 'NAME-parallel'."""
    return [(label, name, settings) for label, name, settings in bench_rules.rule_variants()
            if chosen is None or name in chosen or label in chosen]


def learning_rates(k: int) -> list[float]:
    """K forward learning rates, log-spaced over LR_RANGE (the range's geometric middle for K = 1)."""
    low, high = map(math.log10, LR_RANGE)
    if k == 1:
        return [10 ** ((low + high) / 2)]
    return [10 ** (low + (high - low) * i / (k - 1)) for i in range(k)]


def sampled(k: int, sample: int) -> list[int]:
    """Which of K configurations the sequential arm times: all, or `sample` spread evenly over them."""
    if sample <= 0 or k <= sample:
        return list(range(k))
    return sorted({round(i * (k - 1) / (sample - 1)) for i in range(sample)}) if sample > 1 else [k // 2]


def cut(data: Data, steps: int | None, batch_size: int) -> Data:
    """The data with at most `steps` minibatches per epoch; validation and test cut in the same proportion."""
    n = len(data.train_x)
    if not steps or steps * batch_size >= n:
        return data
    keep = steps * batch_size
    share = keep / n

    def part(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[:max(1, math.ceil(share * len(x)))]

    return dataclasses.replace(data, train_x=data.train_x[:keep], train_y=data.train_y[:keep],
                               val_x=part(data.val_x), val_y=part(data.val_y),
                               test_x=part(data.test_x), test_y=part(data.test_y))


def tensor_bytes(rule: rules.Rule) -> int:
    """Bytes of every tensor a rule keeps between steps: the net's parameters, every optimizer's moments and
    settings, the rule's state and its per-member settings (gradients and activations not counted)."""
    seen, total = set(), 0
    for module in (rule.net, rule.state, rule.hyper, *rule.optimizers().values()):
        for t in (*module.parameters(), *module.buffers()):
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


class Bench:
    """One dataset's data on one device, and the two arms timed on it."""

    def __init__(self, dataset: str, args: argparse.Namespace, device: str) -> None:
        self.dataset, self.args, self.device = dataset, args, device
        full = load(dataset, root=args.data_root, device=device)
        self.data = cut(full, args.steps, args.batch_size)
        self.steps = math.ceil(len(self.data.train_x) / args.batch_size)
        x = self.data.train_x[:args.batch_size]
        self.batch_bytes = x.numel() * x.element_size() + args.batch_size * self.data.train_y.element_size()

    def run(self, family: str, rule: str, settings: dict, seeds: list[int], lrs: list[float],
            data: Data | None = None) -> tuple[float, list[float]]:
        """Build a population of len(seeds) and fit it; (seconds, each member's last test error)."""
        args = self.args
        sync(self.device)
        start = time.perf_counter()
        run = RunConfig(rule=rule, settings={**settings, "forward_lr": lrs}, dataset=self.dataset, arch=family,
                        epochs=args.epochs, batch_size=args.batch_size, seeds=tuple(seeds), data_seed=0, device=self.device,
                        data_root=args.data_root, chance_patience=0)
        _, learner = build(run)
        results = fit(learner, data or self.data, run, progress=False)
        sync(self.device)
        seconds = time.perf_counter() - start
        return seconds, [r.history[-1].test_error if r.history else math.nan for r in results]

    def compare(self, family: str, rule: str, settings: dict, k: int) -> dict[str, Any]:
        """Interleaved rounds of the population of K and (a sample of) its K trials one at a time."""
        args = self.args
        lrs, seeds = learning_rates(k), list(range(k))
        trials = sampled(k, args.sample)
        warm = cut(self.data, 2, args.batch_size)  # untimed: thread pools, allocator, lazy initialisation
        self.run(family, rule, settings, seeds, lrs, warm)
        self.run(family, rule, settings, [0], lrs[:1], warm)
        population, sequential, spent = [], [], 0.0
        pop_errors, seq_errors = [], {}
        r = 0
        while r < args.rounds or (r < MAX_ROUNDS and min(sum(population), spent) < args.min_time):
            for arm in (("population", "sequential") if r % 2 == 0 else ("sequential", "population")):
                if arm == "population":
                    seconds, pop_errors = self.run(family, rule, settings, seeds, lrs)
                    population.append(seconds)
                else:
                    total = 0.0
                    for i in trials:
                        seconds, (error,) = self.run(family, rule, settings, [seeds[i]], [lrs[i]])
                        total += seconds
                        seq_errors[i] = error
                    spent += total
                    sequential.append(total / len(trials) * k)
            r += 1
        pop_s, seq_s = statistics.median(population), statistics.median(sequential)
        diff = max(abs(pop_errors[i] - e) for i, e in seq_errors.items())
        return {"dataset": self.dataset, "family": family, "rule": rule, "k": k,
                "steps_per_epoch": self.steps, "epochs": args.epochs,
                "sequential_s": seq_s, "sequential_trials": len(trials), "population_s": pop_s,
                "sequential_per_hour": 3600 * k / seq_s, "population_per_hour": 3600 * k / pop_s,
                "speedup": seq_s / pop_s, "speedup_of_minima": min(sequential) / min(population), "rounds": r,
                "population_rounds_s": population, "sequential_rounds_s": sequential,
                "max_test_error_diff": diff}


# -- memory ----------------------------------------------------------------------------------------

_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[2])
from bench_population import memory_probe
print(json.dumps(memory_probe(json.loads(sys.argv[1]))))
"""


def _status(field: str) -> int:
    with open("/proc/self/status") as file:
        line = next(l for l in file if l.startswith(field))
    return int(line.split()[1]) * 1024


def memory_probe(job: dict[str, Any]) -> dict[str, Any]:
    """Peak memory and tensor bytes of populations of each K (ascending), one (dataset, family, rule).

    Peak: above the state before building, over building and MEMORY_STEPS steps on one minibatch;
    CUDA's allocator peak on a GPU, else the process's peak resident size (meant for a fresh process).
    """
    import ctypes
    import gc

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    device, cuda = job["device"], job["device"].startswith("cuda")
    libc = None if cuda else ctypes.CDLL("libc.so.6")
    data = load(job["dataset"], root=job["data_root"], device=device)
    x, y = data.train_x[:job["batch_size"]], data.train_y[:job["batch_size"]]

    def one(k: int) -> dict[str, int]:
        gc.collect()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as file:
                file.write("5")  # the peak resident size starts again from the current one
            base = _status("VmRSS")
        _, learner = build(RunConfig(rule=job["rule"], settings={**job["settings"], "forward_lr": learning_rates(k)},
                                     dataset=job["dataset"], arch=job["family"], seeds=tuple(range(k)), device=device,
                                     data_root=job["data_root"]))
        for _ in range(MEMORY_STEPS):
            learner.step(x, y)
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            peak = _status("VmHWM") - base
        out = {"peak": peak, "tensors": tensor_bytes(learner)}
        del learner
        return out

    one(1)  # untimed warm-up: thread pools, library workspaces, lazy initialisation
    return {"kind": "cuda" if cuda else "rss", **{str(k): one(k) for k in sorted(job["populations"])}}


def memory(dataset: str, family: str, rule: str, settings: dict, args: argparse.Namespace,
           device: str) -> dict[str, Any]:
    """`memory_probe` in a fresh process on the CPU (a clean peak resident size), in this one on a GPU."""
    job = {"dataset": dataset, "family": family, "rule": rule, "settings": settings, "device": device,
           "data_root": args.data_root, "batch_size": args.batch_size, "threads": args.threads,
           "populations": sorted({1, *args.populations})}
    if device.startswith("cuda"):
        return memory_probe(job)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(job), os.path.dirname(os.path.abspath(__file__))],
                          check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the table -------------------------------------------------------------------------------------

HEADER = ("| dataset | family | rule | K | steps/epoch | sequential s | measured on | population s | "
          "sequential trials/h | population trials/h | speed-up | peak MiB/member (K) | peak MiB (1 alone) | "
          "tensors KiB/member (K / 1 alone) | memory check |")


def markdown(row: dict[str, Any]) -> str:
    cells = [row["dataset"], row["family"], row["rule"], str(row["k"]), str(row["steps_per_epoch"]),
             f"{row['sequential_s']:.2f}", f"{row['sequential_trials']} of {row['k']}", f"{row['population_s']:.2f}",
             f"{row['sequential_per_hour']:,.0f}", f"{row['population_per_hour']:,.0f}", f"{row['speedup']:.2f}x"]
    if "peak_per_member" in row:
        cells += [f"{row['peak_per_member'] / 2**20:.2f}", f"{row['peak_one'] / 2**20:.2f}",
                  f"{row['tensors_per_member'] / 2**10:.1f} / {row['tensors_one'] / 2**10:.1f}",
                  ("ok" if row["memory_ok"] else "OVER") + f" ({row['memory_share']:.2f})"]
    else:
        cells += ["-"] * 4
    return "| " + " | ".join(cells) + " |"


def add_memory(row: dict[str, Any], measured: dict[str, Any], batch_bytes: int) -> None:
    """Per-member memory of the population of K vs one member alone, and the check: peak of the population
    <= K x one member's + one shared minibatch (within RSS_TOLERANCE for a resident size), and tensor bytes
    <= K x one member's, exactly."""
    k, pop, one = row["k"], measured[str(row["k"])], measured["1"]
    allowed = k * one["peak"] + batch_bytes
    slack = 1 + (RSS_TOLERANCE if measured.get("kind") == "rss" else 0)
    row.update(peak_per_member=pop["peak"] / k, peak_one=one["peak"], tensors_per_member=pop["tensors"] / k,
               tensors_one=one["tensors"], memory_share=pop["peak"] / allowed if allowed > 0 else math.nan,
               memory_ok=pop["peak"] <= slack * allowed and pop["tensors"] <= k * one["tensors"])


def _load() -> str:
    """The 1-minute load average (other processes sharing the cores make every time here noisier)."""
    return f"{os.getloadavg()[0]:.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist", help="comma-separated (mnist needs --data-root)")
    parser.add_argument("--data-root", default=None, help="where the datasets are (default: $BIOSCALE_DATA, else ./data)")
    parser.add_argument("--families", default="fc,lc", help="comma-separated preset families")
    parser.add_argument("--rules", default=None,
                        help="comma-separated rule names (NAME or NAME-parallel; default: every registered rule)")
    parser.add_argument("--populations", default="1,4,16,64", help="comma-separated K values")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="cap every epoch at this many minibatches")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds of each arm, at least (median)")
    parser.add_argument("--min-time", type=float, default=2.0,
                        help=f"add rounds (up to {MAX_ROUNDS}) until each arm has run this many seconds in all")
    parser.add_argument("--sample", type=int, default=8,
                        help="time at most this many of the K sequential trials and scale (0: all K)")
    parser.add_argument("--device", default="auto", help="auto (the first GPU, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory columns")
    parser.add_argument("--json", default=None, help="also write every row (and the settings) to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: digits, fc, bp and dtp, K 1 and 4, one round, two sampled trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.families, args.rules, args.populations = "digits", "fc", "bp,dtp", "1,4"
        args.rounds, args.sample, args.min_time = 1, 2, 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        datasets = names(args.datasets, ("digits", "mnist"), "dataset")
        families = names(args.families, PRESET_NAMES, "family")
        labels = [label for label, _, _ in rule_variants()]
        chosen = None if args.rules is None else names(
            args.rules, sorted(set(rules.names()) | set(labels)), "rule")
        variants = rule_variants(chosen)
        args.populations = sorted({int(k) for k in args.populations.split(",")})
        if min(args.populations) < 1 or args.rounds < 1 or args.epochs < 1:
            raise UsageError("populations, rounds and epochs must be positive")
        benches = {d: Bench(d, args, device) for d in datasets}  # every dataset read before anything runs
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory probes' processes
    name = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
            else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"# bioscale population benchmark, {datetime.date.today()}, {device} ({name}), torch {torch.__version__}, "
          f"batch {args.batch_size}, {args.epochs} epoch(s)" + (f", at most {args.steps} steps an epoch" if args.steps else "")
          + f", median of {args.rounds} interleaved round(s), load average {_load()} at the start\n")
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    start, rows, load_start = time.perf_counter(), [], _load()
    for dataset in datasets:
        bench = benches[dataset]
        for family in families:
            for label, rule, settings in variants:
                measured = memory(dataset, family, rule, settings, args, device) if args.memory else None
                for k in args.populations:
                    row = bench.compare(family, rule, settings, k)
                    row["rule"] = label
                    if measured is not None:
                        add_memory(row, measured, bench.batch_bytes)
                    rows.append(row)
                    print(markdown(row), flush=True)
    seconds = time.perf_counter() - start
    load_end = _load()
    failed = [r for r in rows if r.get("memory_ok") is False]
    print(f"\n{len(rows)} rows in {seconds:.0f} s, load average {load_end} at the end; memory check (population <= K x one member + one minibatch"
          + (f", peak resident size within {RSS_TOLERANCE:.0%}" if not device.startswith("cuda") else "") + "): "
          + ("passed" if not failed else f"FAILED for {len(failed)} row(s)")
          + ("" if args.memory else " (skipped)"))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"date": str(datetime.date.today()), "device": device, "device_name": name,
                       "torch": torch.__version__, "argv": sys.argv[1:], "settings": vars(args),
                       "seconds": seconds, "load_average": [load_start, load_end], "rows": rows}, file, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
