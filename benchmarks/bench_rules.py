"""Step time of every learning rule as a ratio to BP, and LC vs conv time and peak memory.

    python benchmarks/bench_rules.py [--device cpu|cuda] [--batch-size 128] [--rounds 5]
        [--rules bp,fa,kp,...] [--no-layers] [--targets]

Every ratio is measured in one process: each rule's step alternates round by round with a BP
step on a copy of the same network and minibatch, and the table gives the median of the rounds'
ratios, since these machines are noisy. Only BP's network and the timed rule's are held at once.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection

import torch
from torch.utils.flop_counter import FlopCounterMode

from bioscale import rules
from bioscale.nets import build_net

# The paper's input shapes, and digits' 8x8 for quick checks (gpu_check's short CPU form).
SHAPES = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "digits": ((1, 8, 8), 10)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_seconds(step: Callable[[], object], device: str) -> float:
    """Seconds one call of `step` takes: on the CPU the calling thread's CPU time (torch's one thread runs there,
    and time the shared cores give to other processes is not counted), on a GPU the wall clock between syncs."""
    clock = time.perf_counter if device.startswith("cuda") else time.thread_time
    sync(device)
    start = clock()
    step()
    sync(device)
    return clock() - start


# Issue 34's ceilings on a rule's step time as a ratio to BP's (MNIST fc and lc, one CPU thread), by label.
TARGETS = {"kp": 1.25, "wm": 1.6, "dfa": 1.05, "sign-symmetry": 1.05, "sign-symmetry-frsf": 1.05,
           "sign-symmetry-brsf": 1.05, **{f"{tp}-parallel": 2.5 for tp in ("tp", "dtp", "sdtp", "ao-sdtp", "ddtp")}}

# Feedback steps per minibatch at which a rule with `inverse_iterations` (L-DRL) is timed: its cost grows with K.
FEEDBACK_ITERATIONS = (1, 5, 20)


def rule_variants(chosen: Collection[str] | None = None) -> list[tuple[str, str, dict]]:
    """(label, rule, settings) for every registered rule (or the `chosen` ones, BP always); a rule with schedules in the parallel one, whose every step
    does both halves; a rule with K feedback steps per minibatch once per K in FEEDBACK_ITERATIONS (label suffix -K<k>)."""
    out = []
    for name in rules.names():
        if chosen is not None and name not in chosen and name != "bp":
            continue
        schedule = "parallel" if rules.get(name).schedules else None
        label, settings = rules.label(name, schedule), {"schedule": schedule} if schedule else {}
        if "inverse_iterations" in rules.settings(name):
            out += [(f"{label}-K{k}", name, {**settings, "inverse_iterations": k}) for k in FEEDBACK_ITERATIONS]
        else:
            out.append((label, name, settings))
    return out


def step_flops(step: Callable[[], object]) -> int:
    """Matmul and convolution FLOPs of one call of `step` (torch.utils.flop_counter): the bulk of the arithmetic asked for."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def against_bp(dataset: str, family: str, batch_size: int, rounds: int, device: str,
               variants: list[tuple[str, str, dict]] | None = None) -> dict[str, tuple[float, float, float]]:
    """(median seconds per step, median of the rounds' ratios to BP's step, ratio of its step's matmul FLOPs to BP's)
    for each rule variant (default: every one).

    One preset network and minibatch; a reference BP learner is held throughout and each variant's
    learner only while it is timed (networks of CIFAR-10 size, one per variant, would not fit in
    memory at once). Each round times one step of each, in alternating order, after a warm-up step.
    """
    shape, classes = SHAPES[dataset]
    net = build_net(family, dataset, shape, classes).to(device)
    x = torch.randn(batch_size, *shape, device=device)
    y = torch.randint(0, classes, (batch_size,), device=device)
    reference = rules.create("bp", copy.deepcopy(net))
    reference.step(x, y)
    bp_flops = step_flops(lambda: reference.step(x, y))
    out = {}
    for label, name, settings in variants or rule_variants():
        learner = rules.create(name, copy.deepcopy(net), **settings)
        learner.step(x, y)
        flops = step_flops(lambda: learner.step(x, y))
        own, ratios = [], []
        for r in range(rounds):
            seconds = {which: step_seconds(lambda: rule.step(x, y), device)
                       for which, rule in ((label, learner), ("bp", reference))[:: 1 if r % 2 == 0 else -1]}
            own.append(seconds[label])
            ratios.append(seconds[label] / seconds["bp"])
        out[label] = (statistics.median(own), statistics.median(ratios), flops / bp_flops)
        del learner
    return out


def step_times(dataset: str, family: str, batch_size: int, rounds: int, device: str,
               variants: list[tuple[str, str, dict]] | None = None) -> dict[str, float]:
    """Median seconds per step for each rule variant (default: every one), each timed alternating with BP (`against_bp`)."""
    return {label: seconds for label, (seconds, *_) in against_bp(dataset, family, batch_size, rounds, device, variants).items()}


GEOMETRY = [(3, 64, 5, 2, 32), (64, 128, 5, 2, 16), (128, 256, 3, 1, 8)]  # (in, out, kernel, stride, size)

_PROBE = """
import json, sys, time, torch
from bioscale.layers import Conv2d, LocallyConnected2d
kind, device, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
c, o, k, s, n = map(int, sys.argv[4:9])
cuda = device.startswith("cuda")
def make(c, o, k, s, n):
    if kind == "lc":
        return LocallyConnected2d(c, o, k, (n, n), stride=s).to(device)
    return Conv2d(c, o, k, stride=s).to(device)
def sync():
    if cuda:
        torch.cuda.synchronize()
def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field))
    return int(line.split()[1]) * 1024
def used():
    sync()
    return torch.cuda.max_memory_allocated() if cuda else status("VmHWM")
warm = make(c, o, k, s, n)  # a first full-size pass sets up thread pools and library workspaces
warm(torch.randn(1, batch, c, n, n, device=device, requires_grad=True)).sum().backward()
del warm
if not cuda:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size to the current one
base = torch.cuda.memory_allocated() if cuda else status("VmRSS")
layer = make(c, o, k, s, n)
x = torch.randn(1, batch, c, n, n, device=device, requires_grad=True)  # one member
y = layer(x)
y.backward(torch.ones_like(y))
peak = used() - base
outputs, weights = y.numel(), sum(p.numel() for p in layer.parameters())
times = []
for _ in range(4):
    layer.zero_grad(); x.grad = None
    sync(); start = time.perf_counter()
    y = layer(x); y.backward(torch.ones_like(y))
    sync(); times.append(time.perf_counter() - start)
print(json.dumps({"peak": peak, "seconds": sorted(times)[1], "outputs": outputs, "weights": weights}))
"""


def layer_probe(kind: str, geometry: tuple[int, ...], batch_size: int, device: str) -> dict[str, float]:
    """Forward+backward seconds and peak memory of one layer, in a fresh process (peak resident size on the CPU)."""
    argv = [sys.executable, "-c", _PROBE, kind, device, str(batch_size), *map(str, geometry)]
    # A fixed mmap threshold makes glibc hand every large freed block straight back to the OS,
    # so the resident size tracks the live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout)


def minimum_bytes(geometry: tuple[int, ...], batch_size: int, outputs: int, weights: int) -> int:
    """Input, output and weights, the gradients of all three, and one unfolded input, as float32 bytes."""
    c, o, k, _, n = geometry
    unfolded = c * k * k * outputs // o
    return 4 * (2 * (batch_size * c * n * n + outputs + weights) + unfolded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("--families", default="fc,lc,conv")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rules", default=None, help="comma-separated rules to time (default: every one; BP always)")
    parser.add_argument("--no-layers", action="store_true", help="skip the LC vs conv layer table")
    parser.add_argument("--targets", action="store_true", help="also list each ratio against its issue 34 ceiling (TARGETS)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the layer probes' processes
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# bioscale benchmark, {datetime.date.today()}, {device} ({name}), torch {torch.__version__}, batch {args.batch_size}\n")
    print("## Step time as a ratio to BP (same network, same minibatch, median of interleaved rounds' ratios)\n")
    chosen = None if args.rules is None else {"bp", *args.rules.split(",")}
    for name in chosen or ():
        rules.get(name)  # an unknown name: one line listing the rules
    variants = rule_variants(chosen)
    labels = [label for label, _, _ in variants]
    print("| dataset | family | BP step (ms) | " + " | ".join(labels) + " |")
    print("|---|---|---|" + "---|" * len(labels))
    measured = {}
    for dataset in args.datasets.split(","):
        for family in args.families.split(","):
            t = measured[dataset, family] = against_bp(dataset, family, args.batch_size, args.rounds, device, variants)
            ratios = " | ".join(f"{t[label][1]:.2f}" for label in labels)
            print(f"| {dataset} | {family} | {1000 * t['bp'][0]:.1f} | {ratios} |", flush=True)
    print("\n## Matmul and convolution FLOPs of a step as a ratio to BP's (torch.utils.flop_counter)\n")
    print("| dataset | family | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for (dataset, family), t in measured.items():
        print(f"| {dataset} | {family} | " + " | ".join(f"{t[label][2]:.2f}" for label in labels) + " |")
    if args.targets:
        print("\n## Against issue 34's ceilings\n")
        print("| dataset | family | rule | ratio to BP | its FLOPs' ratio | ceiling | met |")
        print("|---|---|---|---|---|---|---|")
        for (dataset, family), t in measured.items():
            for label in (label for label in labels if label in TARGETS):
                _, ratio, flops = t[label]
                print(f"| {dataset} | {family} | {label} | {ratio:.2f} | {flops:.2f} | {TARGETS[label]} | "
                      f"{'yes' if ratio <= TARGETS[label] else 'no'} |")
    if args.no_layers:
        return
    print("\n## CIFAR-10 LC layers: LC vs conv of the same geometry, forward + backward\n")
    print("| layer (in, out, kernel, stride, size) | LC ms | conv ms | LC / conv time | conv peak MiB | LC peak MiB | LC minimum MiB | LC peak / minimum |")
    print("|---|---|---|---|---|---|---|---|")
    for g in GEOMETRY:
        lc, conv = layer_probe("lc", g, args.batch_size, device), layer_probe("conv", g, args.batch_size, device)
        minimum = minimum_bytes(g, args.batch_size, lc["outputs"], lc["weights"])
        print(f"| {g} | {1000 * lc['seconds']:.1f} | {1000 * conv['seconds']:.1f} | {lc['seconds'] / conv['seconds']:.1f} | "
              f"{conv['peak'] / 2**20:.0f} | {lc['peak'] / 2**20:.0f} | {minimum / 2**20:.0f} | {lc['peak'] / minimum:.2f} |", flush=True)


if __name__ == "__main__":
    main()
