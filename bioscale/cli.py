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
    p.add_argument("--device", default="auto", help="torch device: auto (default: the first GPU, else the CPU), cpu, cuda, cuda:1")
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
    from .devices import resolve_device
    from .nets import resolve_arch
    from .train import as_dict, train

    settings: dict[str, Any] = parse_overrides(args.set)
    if args.lr is not None:
        settings["forward_lr"] = args.lr
    device = resolve_device(args.device)
    resolve_arch(args.arch, args.dataset)
    load(args.dataset, root=args.data_root, device=device, download=args.download)
    if not args.json:
        print(f"device: {device}", flush=True)
    start = time.perf_counter()

    def report(record) -> None:
        if not args.json:
            print(f"epoch {record.epoch:3d}  loss {record.loss:.4f}  train {record.train_error:.4f}  "
                  f"val {record.val_error if record.val_error is not None else float('nan'):.4f}  test {record.test_error:.4f}",
                  flush=True)

    result, rule = train(rule=args.rule, dataset=args.dataset, arch=args.arch, activation=args.activation,
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=device,
                         data_root=args.data_root, augment=args.augment, settings=settings, callback=report,
                         progress=False if args.quiet else None)
    last = result.history[-1]
    summary = {"rule": args.rule, "dataset": args.dataset, "arch": args.arch, "activation": args.activation, "device": device,
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
    storage_help = "sqlite:///FILE.db (default sqlite:///bioscale.db), postgresql://USER:PASSWORD@HOST/DB, journal:///FILE.log"
    study = sub.add_parser("study", help="hyperparameter studies with Optuna: run, list, best, evaluate",
                           description="Search architectures and hyperparameters with Optuna; every trial lands in a storage.")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")

    p = commands.add_parser("run", help="create or resume a study and run it to its trial budget",
                            description="Create a study (or resume it: rerun the same command) and run trials until "
                                        "--trials have finished, over all workers and machines sharing the storage.")
    p.add_argument("--stage", default="tune", help="architecture (search one family's architecture) or tune (default)")
    p.add_argument("--rule", default=None, help="learning rule (tune: required; architecture: default dtp, alternating); "
                                                "a label such as dtp-parallel also names the schedule")
    p.add_argument("--schedule", default=None, help="target-propagation schedule: alternating or parallel (fixed per study)")
    p.add_argument("--dataset", default="digits", help="digits (default, offline), mnist, fashion-mnist, cifar10, imagenet32")
    p.add_argument("--arch", default="fc", help="architecture stage: the family fc, lc or conv; tune stage: a preset (fc, lc, "
                                                "conv), a spec such as '3*fc:128', or @STUDY for an architecture study's winner")
    p.add_argument("--trials", type=int, default=60, help="the study's global trial budget (default 60, the paper's)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    p.add_argument("--storage", default=None, help=storage_help)
    p.add_argument("--study-name", default=None, help="default: STAGE:DATASET:ARCH:LABEL, e.g. tune:digits:fc:fa")
    p.add_argument("--sampler", default="tpe", help="tpe (default, seeded, settings pinned) or random (the paper's search)")
    p.add_argument("--pruner", default="none", help="none (default), median, halving, hyperband, or best-after[:EPOCH] "
                                                    "(the paper's ImageNet protocol: only the best goes on after EPOCH, default 10)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the study (default 1)")
    p.add_argument("--devices", default="auto", help="comma-separated devices the workers take in turn, e.g. cuda:0,cuda:1; "
                                                     "auto (default): every GPU torch sees, else the CPU")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a parameter (NAME=VALUE), narrow a range (NAME=LOW:HIGH) or the choices (NAME=A,B); repeatable")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampler and each trial (trial k: seed + k)")
    p.add_argument("--chance-patience", type=int, default=5, help="epochs at chance level before a trial counts as diverged (0: never)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files (default $BIOSCALE_DATA or ./data)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="end with one JSON line: the study's counts and best trial")
    p.set_defaults(func=_run_study_run)

    p = commands.add_parser("list", help="the studies in a storage", description="List the studies in a storage.")
    p.add_argument("--storage", default=None, help=storage_help)
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=_run_study_list)

    p = commands.add_parser("best", help="the best configuration of a study", description="Print a study's best trial.")
    p.add_argument("--storage", default=None, help=storage_help)
    p.add_argument("--study-name", default=None, help="needed when the storage holds more than one study")
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.set_defaults(func=_run_study_best)

    p = commands.add_parser("evaluate", help="re-train a study's best configuration with several seeds",
                            description="Re-train the best configuration on the full training set with several seeds "
                                        "and record the test error's mean and spread in the study.")
    p.add_argument("--storage", default=None, help=storage_help)
    p.add_argument("--study-name", default=None, help="needed when the storage holds more than one study")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=None, help="default: the study's epochs")
    p.add_argument("--device", default="auto", help="torch device: auto (default: the first GPU, else the CPU), cpu, cuda:0")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.set_defaults(func=_run_study_evaluate)

    p = sub.add_parser("dashboard", help="browse a storage's studies in optuna-dashboard",
                       description="Serve optuna-dashboard for a storage (loopback only unless --host says otherwise).")
    p.add_argument("--storage", default=None, help=storage_help)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--artifact-dir", default=None, help="folder of Optuna artifacts to serve")
    p.set_defaults(func=_run_dashboard)


def _run_study_run(args: argparse.Namespace) -> None:
    from .study import best_of, run_study, study_summary

    rule = args.rule or ("dtp" if args.stage == "architecture" else None)
    if rule is None:
        raise UsageError("the tune stage needs --rule, e.g. --rule fa")
    schedule = args.schedule or ("alternating" if args.rule is None and args.stage == "architecture" else None)
    study = run_study(args.stage, rule, args.dataset, args.arch, args.trials, schedule=schedule, storage=args.storage,
                      study_name=args.study_name, sampler=args.sampler, pruner=args.pruner, epochs=args.epochs,
                      workers=args.workers, devices=args.devices, fixed=parse_overrides(args.set), seed=args.seed,
                      data_root=args.data_root, progress=not args.quiet, chance_patience=args.chance_patience)
    row = study_summary(study)
    try:
        top = best_of(study)
    except UsageError:
        top = None
    if args.json:
        print(json.dumps({**row, "best": top}))
        return
    states = ", ".join(f"{n} {s}" for s, n in sorted(row["states"].items()))
    print(f"study {row['study']}: {row['finished']} of {row['budget']} trials finished ({states})")
    if top is not None:
        print(f"best: trial {top['trial']}, validation error {100 * top['val_error']:.2f}% "
              f"(test {100 * top['test_error']:.2f}%, epoch {top['best_epoch']})"
              + (f"; winner {top['winner']}" if "winner" in top else ""))


def _run_study_list(args: argparse.Namespace) -> None:
    from .study import list_studies

    rows = list_studies(args.storage)
    if args.json:
        print(json.dumps(rows))
        return
    if not rows:
        print("no studies in this storage")
    for r in rows:
        val = "-" if r["best_val_error"] is None else f"{100 * r['best_val_error']:.2f}%"
        test = "" if r["test_error_mean"] is None else f"  evaluated test {100 * r['test_error_mean']:.2f}%"
        print(f"{r['study']}  {r['finished']}/{r['budget']} trials  best val {val}{test}")


def _run_study_best(args: argparse.Namespace) -> None:
    from .study import best, train_command

    top = best(args.storage, args.study_name)
    if args.json:
        print(json.dumps(top))
        return
    print(f"study {top['study']}: best of {top['finished']} finished trials is trial {top['trial']}")
    print(f"validation error {100 * top['val_error']:.2f}%  test error {100 * top['test_error']:.2f}%  "
          f"train error {100 * top['train_error']:.2f}%  (epoch {top['best_epoch']})")
    config = top["config"]
    width = max(map(len, config), default=0)
    for key, value in config.items():
        mark = "  (sampled)" if key in top["params"] else ""
        print(f"  {key:<{width}} = {value}{mark}")
    if "winner" in top:
        print(f"winner architecture: {top['winner']}")
    if "evaluation" in top and top["evaluation"].get("test_error_mean") is not None:
        e = top["evaluation"]
        print(f"evaluated: test error {100 * e['test_error_mean']:.2f}% ± {100 * e['test_error_std']:.2f}% over seeds {e['seeds']}")
    print(f"reproduce: {train_command(config)}")


def _run_study_evaluate(args: argparse.Namespace) -> None:
    from .study import evaluate_study

    result = evaluate_study(args.storage, args.study_name, seeds=_seeds(args.seeds), epochs=args.epochs, device=args.device,
                            data_root=args.data_root, progress=False if args.quiet else None)
    if args.json:
        print(json.dumps(result))
        return
    if result["test_error_mean"] is None:
        print(f"every seed diverged: {result.get('diverged')}")
        return
    print(f"test error {100 * result['test_error_mean']:.2f}% ± {100 * result['test_error_std']:.2f}% "
          f"over seeds {result['seeds']} ({result['epochs']} epochs on the full training set; trial {result['trial']})")


def _run_dashboard(args: argparse.Namespace) -> None:
    from .study import serve_dashboard

    serve_dashboard(args.storage, host=args.host, port=args.port, artifact_dir=args.artifact_dir)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    """`bioscale analyze`."""
    p = sub.add_parser("analyze", help="importances, tanh vs ReLU, stability and the paper's tables: plots and a report",
                       description="Analyse finished studies: write every figure and report.md / report.html under --out.")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///bioscale.db)")
    p.add_argument("--study", action="append", default=None, metavar="PATTERN",
                   help="study-name glob, repeatable (default: every tuning study)")
    p.add_argument("--out", required=True, help="folder for figures and report")
    p.add_argument("--format", default="png", help="comma-separated figure formats: png, pdf, svg (default png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .analysis import analyze
    from .study import DEFAULT_STORAGE

    report = analyze(args.storage or DEFAULT_STORAGE, args.study, Path(args.out), tuple(args.format.split(",")),
                     progress=not args.quiet)
    print(f"report: {report}")


# Digits runs only ~9 minibatches an epoch, so a slow start is no sign of divergence there:
# the demo never stops a run for sitting at chance (NaN losses still end it).
DEMO = {"dataset": "digits", "archs": ("fc", "lc"), "trials": 12, "epochs": 12, "seeds": "0,1", "chance_patience": 0}


def _add_demo_commands(sub: argparse._SubParsersAction) -> None:
    """`bioscale demo` and `bioscale campaign`."""
    import os

    p = sub.add_parser("demo", help="the whole study on the embedded digits data: every rule, analysis, report",
                       description="A small tuning study for every rule and schedule on digits (fc and lc presets, "
                                   "activation searched), evaluation of each best configuration, then the analysis report.")
    p.add_argument("--out", default="bioscale-demo", help="folder for the storage, figures and report (default bioscale-demo)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/bioscale.db)")
    p.add_argument("--trials", type=int, default=DEMO["trials"], help=f"trials per study (default {DEMO['trials']})")
    p.add_argument("--epochs", type=int, default=DEMO["epochs"], help=f"epochs per trial (default {DEMO['epochs']})")
    p.add_argument("--seeds", default=DEMO["seeds"], help=f"evaluation seeds (default {DEMO['seeds']})")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: every core)")
    p.add_argument("--rules", default=None, help="comma-separated subset of rules (default: all)")
    p.add_argument("--devices", default="auto", help="comma-separated devices the workers take in turn; "
                                                     "auto (default): every GPU torch sees, else the CPU")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_demo)

    p = sub.add_parser("campaign", help="the paper's protocol on a real dataset: random search per rule, evaluation, report",
                       description="Random search over N configurations for every rule and schedule on one dataset and "
                                   "architecture, the best configuration re-evaluated with several seeds, then the report "
                                   "with the paper's numbers beside ours.")
    p.add_argument("--dataset", required=True, help="mnist, fashion-mnist, cifar10, imagenet32 or digits")
    p.add_argument("--arch", required=True, help="preset fc, lc or conv, a spec string, or @STUDY (an architecture-stage winner)")
    p.add_argument("--rules", default=None, help="comma-separated rules (default: all)")
    p.add_argument("--trials", type=int, default=60, help="configurations per rule and schedule (default 60, the paper's)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per configuration (default 30; the paper ran 500)")
    p.add_argument("--sampler", default="random", help="random (default, the paper's) or tpe")
    p.add_argument("--pruner", default="none", help="none (default), median, halving, hyperband, best-after[:EPOCH]")
    p.add_argument("--seeds", default="0,1,2", help="evaluation seeds (default 0,1,2)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///bioscale.db)")
    p.add_argument("--workers", type=int, default=1, help="worker processes per study (default 1)")
    p.add_argument("--devices", default="auto", help="comma-separated devices the workers take in turn, e.g. cuda:0,cuda:1; "
                                                     "auto (default): every GPU torch sees, else the CPU")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files (default $BIOSCALE_DATA or ./data)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="fix or narrow a parameter in every study")
    p.add_argument("--out", default=None, help="folder for figures and report (default campaign-DATASET-ARCH)")
    p.add_argument("--format", default="png,pdf", help="figure formats (default png,pdf)")
    p.add_argument("--chance-patience", type=int, default=5, help="epochs at chance level before a trial counts as diverged (0: never)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_run_campaign)


def _seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]; anything else is a UsageError."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"bad --seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None


def _run_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .devices import resolve_devices
    from .study.campaign import plan_campaign

    devices = resolve_devices(args.devices)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{(out / 'bioscale.db').resolve()}"
    studies = plan_campaign(DEMO["dataset"], DEMO["archs"], args.rules.split(",") if args.rules else None)
    _campaign_then_report(args, studies, storage, out, trials=args.trials, epochs=args.epochs, sampler="tpe",
                          pruner="none", workers=args.workers, devices=devices, fixed={}, data_root=None,
                          parallel_studies=True, chance_patience=DEMO["chance_patience"], formats=("png", "pdf"))


def _run_campaign(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .devices import resolve_devices
    from .study import DEFAULT_STORAGE
    from .study.campaign import plan_campaign

    devices = resolve_devices(args.devices)
    studies = plan_campaign(args.dataset, [args.arch], args.rules.split(",") if args.rules else None)
    out = Path(args.out or f"campaign-{args.dataset}-{args.arch.strip('@').replace(':', '-').replace('*', 'x').replace(',', '_')}")
    _campaign_then_report(args, studies, args.storage or DEFAULT_STORAGE, out, trials=args.trials, epochs=args.epochs,
                          sampler=args.sampler, pruner=args.pruner, workers=args.workers,
                          devices=devices, fixed=parse_overrides(args.set), data_root=args.data_root,
                          parallel_studies=False, chance_patience=args.chance_patience,
                          formats=tuple(args.format.split(",")))


def _campaign_then_report(args: argparse.Namespace, studies, storage: str, out, *, formats: tuple[str, ...], **options) -> None:
    import shlex
    import time

    from .analysis import ARTIFACT_DIR_NAME, analyze, best_table
    from .study import dashboard_command
    from .study.campaign import run_campaign

    start = time.perf_counter()
    seeds = _seeds(args.seeds)
    names = run_campaign(studies, storage=storage, seeds=seeds, progress=not args.quiet, **options)
    report = analyze(storage, names, out, formats, progress=not args.quiet)
    table = best_table(storage, names)
    columns = ["dataset", "arch", "label", "trials_complete", "best_val_error", "evaluated_test_mean"]
    print(f"\nbest errors ({options['trials']} trials x {options['epochs']} epochs per study, "
          f"evaluated over seeds {','.join(map(str, seeds))}):")
    print(table[columns].to_string(index=False, float_format=lambda v: f"{100 * v:.2f}%"))
    print(f"\nreport: {report.resolve()}")
    print(f"html:   {report.with_suffix('.html').resolve()}")
    print(f"dashboard: {shlex.join(dashboard_command(storage, str((out / ARTIFACT_DIR_NAME).resolve())))}")
    print(f"took {time.perf_counter() - start:.0f} s")


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
