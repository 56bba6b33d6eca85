"""A check of one device in a few minutes: every rule on every family, a 2-worker study, step-time ratios; one table.

    python benchmarks/gpu_check.py [--device auto|cuda:N|cpu] [--dataset mnist|digits] [--data-root DIR] [--out FILE]

The short CPU form (the test suite runs it):

    python benchmarks/gpu_check.py --device cpu --dataset digits --shapes digits --rounds 1 --trials 2

Every item runs on its own: one that raises shows as FAIL with its reason, the others still run,
and the script exits 1 at the end (0 when every item passed, 2 for bad options).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import torch
from optuna.trial import TrialState

from bench_rules import SHAPES, step_times
from bioscale import rules
from bioscale.devices import resolve_device
from bioscale.errors import UsageError
from bioscale.nets import PRESET_NAMES
from bioscale import contract
from bioscale.contract import is_finished
from bioscale.spec import StudySpec
from bioscale.study import run_study
from bioscale.run_config import RunConfig
from bioscale.train import train

STUDY_WORKERS = 2


@dataclass
class Row:
    """One item of the check: its name, whether it passed, what it measured or why it failed, its wall time."""

    item: str
    ok: bool
    result: str
    seconds: float

    def markdown(self) -> str:
        """The row as a markdown table line."""
        cells = (self.item, "PASS" if self.ok else "FAIL", self.result.replace("|", "\\|"), f"{self.seconds:.1f}")
        return "| " + " | ".join(cells) + " |"


def run_item(item: str, job: Callable[[], str]) -> Row:
    """Run one item, timing it; an exception becomes a FAIL row with a one-line reason."""
    start = time.perf_counter()
    try:
        result, ok = job(), True
    except Exception as error:  # every failure is a row of the table
        text = str(error).strip().splitlines()
        result, ok = f"{type(error).__name__}: {text[0] if text else ''}"[:240].rstrip(": "), False
    return Row(item, ok, result, time.perf_counter() - start)


def train_one(rule: str, settings: dict, family: str, args: argparse.Namespace, device: str) -> str:
    """Train one rule on one preset family for `args.epochs` epochs; the last epoch's errors."""
    run = RunConfig(rule=rule, settings=settings, dataset=args.dataset, arch=family, epochs=args.epochs,
                    batch_size=args.batch_size, seeds=(0,), device=device, data_root=args.data_root, chance_patience=0)
    result, _ = train(run, progress=False)
    last = result.history[-1]
    return f"test error {100 * last.test_error:.2f}%, train error {100 * last.train_error:.2f}%, loss {last.loss:.3f}"


def study_check(args: argparse.Namespace, device: str) -> str:
    """A tune-stage study of `args.study_rule` on the FC preset, 2 worker processes on one device, in a fresh SQLite file."""
    with tempfile.TemporaryDirectory(prefix="bioscale-gpu-check-") as folder:
        spec = StudySpec(rule=args.study_rule, dataset=args.dataset, arch="fc", trials=args.trials, epochs=args.epochs,
                         workers=STUDY_WORKERS, devices=(device,), storage=f"sqlite:///{folder}/check.db",
                         data_root=args.data_root, overrides={"batch_size": str(args.batch_size)})
        study = run_study(spec, progress=False)
        trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if is_finished(t)]
    errors = [t.user_attrs.get(contract.END_REASON) or "no reason recorded" for t in trials if t.state == TrialState.FAIL]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(trials)} trials failed: {errors[0]}")
    if len(done) < args.trials:
        raise RuntimeError(f"only {len(done)} of {args.trials} trials finished")
    elsewhere = {t.user_attrs.get(contract.DEVICE) for t in trials} - {device}
    if elsewhere:
        raise RuntimeError(f"trials ran on {sorted(map(str, elsewhere))}, not {device}")
    processes = {t.user_attrs[contract.WORKER].rsplit(":", 1)[0] for t in trials if contract.WORKER in t.user_attrs}
    values = [t.value for t in trials if t.value is not None]
    best = f", best val error {100 * min(values):.2f}%" if values else ""
    return (f"{STUDY_WORKERS} workers on {device}: {len(done)}/{args.trials} trials finished "
            f"({len(values)} complete, run by {len(processes)} processes){best}")


def ratio_check(dataset: str, family: str, args: argparse.Namespace, device: str) -> str:
    """Every rule's step time as a ratio to BP's at one paper shape (see bench_rules.py)."""
    times = step_times(dataset, family, args.batch_size, args.rounds, device)
    bad = [label for label, seconds in times.items() if not (math.isfinite(seconds) and seconds > 0)]
    if bad:
        raise RuntimeError(f"no step time for {', '.join(bad)}")
    ratios = ", ".join(f"{label} {seconds / times['bp']:.2f}" for label, seconds in times.items() if label != "bp")
    return f"BP {1000 * times['bp']:.1f} ms; {ratios}"


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's and torch's thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated list checked against the known names."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (the first GPU, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits"),
                        help="training data of the rule runs and the study (digits: offline and small, for the CPU)")
    parser.add_argument("--data-root", default=None, help="where the datasets are (default: $BIOSCALE_DATA, else ./data)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each rule run and each study trial")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rules", default=",".join(rules.names()), help="comma-separated (default: every registered rule)")
    parser.add_argument("--families", default=",".join(PRESET_NAMES), help="comma-separated preset families")
    parser.add_argument("--study-rule", default="bp", help="the rule the 2-worker study tunes")
    parser.add_argument("--trials", type=int, default=4, help="trials of the 2-worker study")
    parser.add_argument("--shapes", default="mnist,cifar10", help="input shapes of the step-time ratios (mnist, cifar10: the paper's; digits: quick)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the step-time ratios")
    parser.add_argument("--out", default=None, help="also write the table to this markdown file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every item, print the table as it grows; 1 when an item failed."""
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        chosen = set(names(args.rules, rules.names(), "rule"))
        families = names(args.families, PRESET_NAMES, "family")
        shapes = names(args.shapes, tuple(SHAPES), "shape")
        if args.study_rule not in rules.names():
            raise UsageError(f"unknown rule {args.study_rule!r} for the study; choose from: {', '.join(rules.names())}")
        if min(args.epochs, args.batch_size, args.trials, args.rounds) < 1:
            raise UsageError("--epochs, --batch-size, --trials and --rounds must be at least 1")
    except UsageError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    # One training run per rule at its default settings; the step ratios below still time every K of a rule that has them.
    variants = [(rules.label(name, "parallel" if rules.get(name).schedules else None), name,
                 {"schedule": "parallel"} if rules.get(name).schedules else {})
                for name in rules.names() if name in chosen]
    items: list[tuple[str, Callable[[], str]]] = [
        (f"train {args.dataset} {family} {label}", lambda r=name, s=settings, f=family: train_one(r, s, f, args, device))
        for family in families for label, name, settings in variants]
    items.append((f"study tune {args.dataset} fc {args.study_rule}, {STUDY_WORKERS} workers",
                  lambda: study_check(args, device)))
    items += [(f"step ratio {shape} {family}", lambda d=shape, f=family: ratio_check(d, f, args, device))
              for shape in shapes for family in families]
    lines = [f"# bioscale device check, {datetime.date.today()}", "",
             f"device {device} ({device_name(device)}), torch {torch.__version__}"
             + (f", CUDA {torch.version.cuda}" if device.startswith("cuda") else "")
             + f", {args.dataset}, {args.epochs} epoch(s), batch {args.batch_size}", "",
             "| item | status | result | seconds |", "|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    start, rows = time.perf_counter(), []
    for item, job in items:
        rows.append(run_item(item, job))
        lines.append(rows[-1].markdown())
        print(lines[-1], flush=True)
    failed = sum(not row.ok for row in rows)
    lines += ["", f"{len(rows)} items, {failed} failed, {time.perf_counter() - start:.0f} s in all"
              + (f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB in this process"
                 if device.startswith("cuda") else "")]
    print("\n".join(lines[-2:]), flush=True)
    if args.out:
        with open(args.out, "w") as file:
            file.write("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
