"""The `bioscale` command: argument parsing only; each command calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .errors import UsageError


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """`["key=value", ...]` -> dict; a malformed pair raises UsageError."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"malformed --set {pair!r}: write --set name=value, e.g. --set forward_lr=3e-4")
        out[key.strip()] = value.strip()
    return out


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one network with one learning rule",
                       description="Train one network with one learning rule and print its errors.")
    p.add_argument("--rule", required=True, help="learning rule: bp, fa, dfa, tp, dtp, sdtp, ao-sdtp")
    p.add_argument("--dataset", default="digits", help="digits (default, offline), mnist, fashion-mnist, cifar10, imagenet32")
    p.add_argument("--arch", default="fc", help="preset fc, lc or conv, or a spec such as '3*fc:128' (see README)")
    p.add_argument("--activation", default="tanh", help="tanh (default, the paper's) or relu")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="forward learning rate (same as --set forward_lr=X)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a rule setting; repeatable")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files (default $BIOSCALE_DATA or ./data)")
    p.add_argument("--download", action="store_true", help="download the dataset where torchvision can")
    p.add_argument("--augment", action="store_true", help="random crops and flips on the device (CIFAR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="end with one JSON line of results")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    import time

    from .data import load
    from .nets import resolve_arch
    from .train import as_dict, train

    settings: dict[str, Any] = parse_overrides(args.set)
    if args.lr is not None:
        settings["forward_lr"] = args.lr
    resolve_arch(args.arch, args.dataset)
    load(args.dataset, root=args.data_root, device=args.device, download=args.download)
    start = time.perf_counter()

    def report(record) -> None:
        if not args.json:
            print(f"epoch {record.epoch:3d}  loss {record.loss:.4f}  train {record.train_error:.4f}  "
                  f"val {record.val_error if record.val_error is not None else float('nan'):.4f}  test {record.test_error:.4f}",
                  flush=True)

    result, rule = train(rule=args.rule, dataset=args.dataset, arch=args.arch, activation=args.activation,
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=args.device,
                         data_root=args.data_root, augment=args.augment, settings=settings, callback=report,
                         progress=False if args.quiet else None)
    last = result.history[-1]
    summary = {"rule": args.rule, "dataset": args.dataset, "arch": args.arch, "activation": args.activation,
               "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
               "train_error": last.train_error, "val_error": last.val_error, "test_error": last.test_error,
               "best_epoch": result.best.epoch, "settings": rule.get_params(),
               "seconds": round(time.perf_counter() - start, 3), "history": [as_dict(r) for r in result.history]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.rule} on {args.dataset}/{args.arch}: test error {100 * last.test_error:.2f}% "
              f"after {args.epochs} epochs ({summary['seconds']:.1f} s)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="bioscale", description="Does this biologically plausible learning rule scale, and how fragile is it?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_study_commands(sub)
    _add_analyze(sub)
    _add_demo_commands(sub)
    return parser


def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    """`bioscale study ...` and `bioscale dashboard` (the study driver's commands)."""


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    """`bioscale analyze`."""


def _add_demo_commands(sub: argparse._SubParsersAction) -> None:
    """`bioscale demo` and `bioscale campaign`."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bioscale` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UsageError as error:
        print(f"bioscale: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bioscale: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
