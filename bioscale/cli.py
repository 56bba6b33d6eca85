"""The `bioscale` command: parses arguments, calls one library function per command, prints what it returns."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import defaults
from .contract import Evaluation
from .errors import UsageError
from .formats import percent

if TYPE_CHECKING:
    from .spec import StudySpec

STORAGE_HELP = "sqlite:///FILE.db (default sqlite:///bioscale.db), postgresql://USER:PASSWORD@HOST/DB, journal:///FILE.log"
DEVICES_HELP = "comma-separated devices the workers take in turn, e.g. cuda:0,cuda:1; auto (default): every GPU torch sees, else the CPU"
DEVICE_HELP = "torch device: auto (default: the first GPU, else the CPU), cpu, cuda, cuda:1"
SET_HELP = "fix a parameter (NAME=VALUE), narrow a range (NAME=LOW:HIGH) or the choices (NAME=A,B); repeatable"


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """`["key=value", ...]` -> dict; a malformed pair raises UsageError."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"malformed --set {pair!r}: write --set name=value, e.g. --set forward_lr=3e-4")
        out[key.strip()] = value.strip()
    return out


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]; anything else is a UsageError."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"bad --seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None


def _joined(values: Sequence[object]) -> str:
    return ",".join(map(str, values))


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _positional_storage(args: argparse.Namespace, max_rest: int) -> tuple[str | None, list[str]]:
    """(the storage, the other positionals) of a command that also takes its storage positionally (`study status`, `export`).

    With --storage every positional is one of the others; without it the first positional is the storage.
    None means bioscale's default storage, as for every command's --storage.
    """
    given = list(args.positional)
    storage = args.storage if args.storage is not None else (given.pop(0) if given else None)
    if len(given) > max_rest:
        raise UsageError(f"unexpected argument {given[max_rest]!r}: give the storage once, as --storage URL or as the "
                         "first argument")
    return storage, given


# ---------------------------------------------------------------------------------------------
# Options shared by several commands, declared once.


def _options(*names: str, **given: Any) -> argparse.ArgumentParser:
    """A parent parser holding the named shared options (`given` overrides a default or a help text)."""
    from .datasets import help_text

    p = argparse.ArgumentParser(add_help=False)
    declared = {
        "dataset": lambda d: p.add_argument("--dataset", default=d.get("dataset", defaults.DATASET), help=help_text()),
        "storage": lambda d: p.add_argument("--storage", default=None, help=STORAGE_HELP),
        "study-name": lambda d: p.add_argument("--study-name", default=None,
                                               help="needed when the storage holds more than one study"),
        "device": lambda d: p.add_argument("--device", default="auto", help=DEVICE_HELP),
        "devices": lambda d: p.add_argument("--devices", default="auto", help=DEVICES_HELP),
        "workers": lambda d: p.add_argument("--workers", type=int, default=d.get("workers", defaults.WORKERS),
                                            help=d.get("workers_help", "local worker processes (default 1)")),
        "set": lambda d: p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=d.get("set", SET_HELP)),
        "seeds": lambda d: p.add_argument("--seeds", default=d.get("seeds", _joined(defaults.EVALUATION_SEEDS)),
                                          help=f"comma-separated evaluation seeds (default "
                                               f"{d.get('seeds', _joined(defaults.EVALUATION_SEEDS))})"),
        "data-root": lambda d: p.add_argument("--data-root", default=None,
                                              help="folder holding the dataset files (default $BIOSCALE_DATA or ./data)"),
        "chance-patience": lambda d: p.add_argument("--chance-patience", type=int, default=defaults.CHANCE_PATIENCE,
                                                    help=f"epochs at chance level before a trial counts as stalled (0: never; "
                                                         f"default {defaults.CHANCE_PATIENCE})"),
        "rules": lambda d: p.add_argument("--rules", default=None, help="comma-separated rules (default: all)"),
        "quiet": lambda d: p.add_argument("--quiet", action="store_true", help="no progress output"),
        "population": lambda d: p.add_argument(
            "--population", type=int, default=d.get("population", defaults.POPULATION),
            help=f"trials each worker trains at once as one batched model: same numbers, more trials per hour "
                 f"(default {d.get('population', defaults.POPULATION)})"),
        "json": lambda d: p.add_argument("--json", action="store_true", help=d.get("json", "end with one JSON line")),
        "checkpoints": lambda d: _checkpoint_options(p, d),
    }
    for name in names:
        declared[name](given)
    return p


def _checkpoint_options(p: argparse.ArgumentParser, given: dict[str, Any]) -> None:
    p.add_argument("--checkpoint-every", type=int, default=defaults.CHECKPOINT_EVERY, metavar="N",
                   help=f"each trial's population saves every N epochs (default {defaults.CHECKPOINT_EVERY}; 0: only when "
                        "preempted); a re-run of a lost or preempted trial resumes from its checkpoint")
    p.add_argument("--checkpoint-dir", default=None,
                   help=given.get("checkpoint_dir", "folder for the checkpoints (default: FILE.checkpoints beside a file "
                                                    "storage, else ./bioscale-checkpoints)"))
    p.add_argument("--keep-checkpoints", action="store_true", help="keep finished trials' checkpoints (default: removed)")


# ---------------------------------------------------------------------------------------------
# train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one network with one learning rule",
                       description="Train one network with one learning rule and print its errors.",
                       parents=[_options("dataset", "device", "set", "data-root", "quiet", "json")])
    p.add_argument("--rule", required=True, help="learning rule, e.g. bp, fa, dtp (an unknown name lists every registered rule)")
    p.add_argument("--arch", default=defaults.ARCH, help="preset fc, lc or conv, or a spec such as '3*fc:128' (see README)")
    p.add_argument("--activation", default=defaults.ACTIVATION, help=f"tanh or relu (default {defaults.ACTIVATION}, the paper's)")
    p.add_argument("--epochs", type=int, default=defaults.EPOCHS)
    p.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE)
    p.add_argument("--lr", type=float, default=None, help="forward learning rate (same as --set forward_lr=X)")
    p.add_argument("--download", action="store_true", help="download the dataset where torchvision can")
    p.add_argument("--augment", action="store_true", help="random crops and flips on the device (CIFAR)")
    p.add_argument("--seed", type=int, default=defaults.SEED, help="draws the initial weights, feedback weights and noise (default 0)")
    p.add_argument("--data-seed", type=int, default=None, help="draws the minibatch order (default: --seed)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    import time
    from dataclasses import replace

    from .run_config import RunConfig

    settings: dict[str, Any] = parse_overrides(args.set)
    if args.lr is not None:
        settings["forward_lr"] = args.lr
    run = RunConfig(rule=args.rule, settings=settings, dataset=args.dataset, arch=args.arch, activation=args.activation,
                    epochs=args.epochs, batch_size=args.batch_size, seeds=(args.seed,), data_seed=args.data_seed,
                    device=args.device, data_root=args.data_root, augment=args.augment).checked()  # before torch loads

    from .data import load
    from .devices import resolve_device
    from .nets import resolve_arch
    from .train import summary, train

    run = replace(run, device=resolve_device(run.device))
    resolve_arch(run.arch, run.dataset)
    load(run.dataset, root=run.data_root, device=run.device, download=args.download)
    if not args.json:
        print(f"device: {run.device}", flush=True)

    def report(record) -> None:
        if not args.json:
            print(f"epoch {record.epoch:3d}  loss {record.loss:.4f}  train {record.train_error:.4f}  "
                  f"val {record.val_error if record.val_error is not None else float('nan'):.4f}  test {record.test_error:.4f}",
                  flush=True)

    start = time.perf_counter()
    result, rule = train(run, callback=report, progress=False if args.quiet else None)
    out = summary(result, rule, run, seconds=time.perf_counter() - start)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{run.rule} on {run.dataset}/{run.arch}: test error {100 * out['test_error']:.2f}% "
              f"after {run.epochs} epochs ({out['seconds']:.1f} s)")


# ---------------------------------------------------------------------------------------------
# study run / list / best / evaluate, dashboard


def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="hyperparameter studies with Optuna: run, list, best, evaluate",
                           description="Search architectures and hyperparameters with Optuna; every trial lands in a storage.")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")

    p = commands.add_parser("run", help="create or resume a study and run it to its trial budget",
                            description="Create a study (or resume it: rerun the same command) and run trials until "
                                        "--trials have finished, over all workers and machines sharing the storage.",
                            parents=[_options("dataset", "storage", "devices", "workers", "population", "set", "data-root",
                                              "chance-patience", "quiet", "json", "checkpoints",
                                              workers_help="local worker processes sharing the study (default 1)",
                                              json="end with one JSON line: the study's counts and best trial")])
    _study_arguments(p)
    p.set_defaults(func=_run_study_run)

    p = commands.add_parser("launch", help="create a study and submit its workers as one job array (Slurm, or local processes)",
                            description="Create the study once (as `study run` would), then submit --jobs workers as one job "
                                        "array through submitit; each pulls trials until the global budget is met. Preempted "
                                        "or timed-out jobs save, are requeued and resume their trials from the checkpoint.",
                            parents=[_options("dataset", "storage", "population", "set", "data-root", "chance-patience",
                                              "quiet", "checkpoints",
                                              checkpoint_dir="folder for the checkpoints, reachable from every node "
                                                             "(default LOG_DIR/checkpoints)")])
    _study_arguments(p)
    _launch_arguments(p)
    p.set_defaults(func=_run_study_launch)

    p = commands.add_parser("status", help="budget, trial counts, running trials and time left of the studies in a storage",
                            description="Per study: the budget, COMPLETE / PRUNED / FAIL / RUNNING / WAITING counts, each running "
                                        "trial's worker, epoch and heartbeat age, and an estimate of the time left.",
                            parents=[_options("storage")])
    p.add_argument("positional", nargs="*", metavar="[STORAGE] [PATTERN]",
                   help="the storage (also --storage) and a study-name glob (default: every study)")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=float, default=defaults.STATUS_INTERVAL,
                   help=f"seconds between refreshes with --watch (default {defaults.STATUS_INTERVAL:g})")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=_run_study_status)

    p = commands.add_parser("list", help="the studies in a storage", description="List the studies in a storage.",
                            parents=[_options("storage", "json", json="one JSON list")])
    p.set_defaults(func=_run_study_list)

    p = commands.add_parser("best", help="the best configuration of a study", description="Print a study's best trial.",
                            parents=[_options("storage", "study-name", "json", json="one JSON line")])
    p.set_defaults(func=_run_study_best)

    p = commands.add_parser("evaluate", help="re-train a study's best configuration with several seeds",
                            description="Re-train the best configuration with several seeds (validation split held out, "
                                        "as in the trials) and record the test error at the epoch of best validation "
                                        "error and at the last epoch in the study.",
                            parents=[_options("storage", "study-name", "seeds", "device", "data-root", "quiet", "json",
                                              json="one JSON line")])
    p.add_argument("--epochs", type=int, default=None, help="default: the study's epochs")
    p.set_defaults(func=_run_study_evaluate)

    p = sub.add_parser("dashboard", help="browse a storage's studies in optuna-dashboard",
                       description="Serve optuna-dashboard for a storage (loopback only unless --host says otherwise).",
                       parents=[_options("storage")])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--artifact-dir", default=None, help="folder of Optuna artifacts to serve")
    p.set_defaults(func=_run_dashboard)


def _study_arguments(p: argparse.ArgumentParser) -> None:
    """What a study is (shared by `study run` and `study launch`)."""
    p.add_argument("--stage", default=defaults.STAGE, help="architecture (search one family's architecture) or tune (default)")
    p.add_argument("--rule", default=None, help="learning rule (tune: required; architecture: default dtp, alternating); "
                                                "a label such as dtp-parallel also names the schedule")
    p.add_argument("--schedule", default=None, help="target-propagation schedule: alternating or parallel (fixed per study)")
    p.add_argument("--arch", default=defaults.ARCH, help="architecture stage: the family fc, lc or conv; tune stage: a preset (fc, lc, "
                                                "conv), a spec such as '3*fc:128', or @STUDY for an architecture study's winner")
    p.add_argument("--study-name", default=None, help="default: STAGE:DATASET:ARCH:LABEL, e.g. tune:digits:fc:fa")
    p.add_argument("--trials", type=int, default=defaults.TRIALS, help=f"the study's global trial budget (default {defaults.TRIALS}, the paper's)")
    p.add_argument("--epochs", type=int, default=defaults.EPOCHS, help=f"epochs per trial (default {defaults.EPOCHS})")
    _design_arguments(p, defaults.SAMPLER, defaults.PRUNER, shared_draws=False)
    p.add_argument("--seed", type=int, default=defaults.SEED, help="seeds the sampler and each trial (trial k: seed + k)")
    p.add_argument("--protocol", default=defaults.PROTOCOL,
                   help="what is searched: extended (default: every setting bioscale knows, activation and batch size "
                        "included) or paper (the paper's Table 4 only; tanh, batch 128, whole-epoch alternation)")
    p.add_argument("--activation", default=None, help="hold the activation (tanh or relu); the study's name ends in :ACTIVATION")
    p.add_argument("--default-trial", action="store_true",
                   help="also train the rule's default settings once, outside the budget (how much tuning buys)")


def _design_arguments(p: argparse.ArgumentParser, sampler: str, pruner: str, *, shared_draws: bool = True) -> None:
    """The search design: sampler, fidelity (the pruner) and, for several rules, shared draws (docs/studies.md)."""
    p.add_argument("--sampler", default=sampler, help=f"{', '.join(defaults.SAMPLERS)} (default {sampler}): tpe is seeded with "
                                                      "its settings pinned, random is the paper's search, sobol random search "
                                                      "with better coverage (scrambled Sobol points)")
    p.add_argument("--pruner", default=pruner, help=f"{', '.join(defaults.PRUNERS)} (default {pruner}). halving: successive "
                                                    "halving inside each population (the best 1/ETA go on at each rung, "
                                                    "ETA default 3); hyperband: one bracket per population; best-after: the "
                                                    "paper's ImageNet protocol (only the best goes on after EPOCH, default 10)")
    if shared_draws:
        p.add_argument("--shared-draws", action="store_true",
                       help="every rule samples the same configurations (common random numbers; default: each rule its own, "
                            "a tanh/ReLU pair shared)")


def study_spec(args: argparse.Namespace) -> StudySpec:
    """The checked study specification of `bioscale study run`'s arguments."""
    from .spec import StudySpec

    return StudySpec(stage=args.stage, rule=args.rule, schedule=args.schedule, dataset=args.dataset, arch=args.arch,
                     trials=args.trials, epochs=args.epochs, protocol=args.protocol, activation=args.activation,
                     overrides=parse_overrides(args.set), sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                     chance_patience=args.chance_patience, default_trial=args.default_trial, storage=args.storage,
                     study_name=args.study_name, data_root=args.data_root, workers=getattr(args, "workers", defaults.WORKERS),
                     devices=getattr(args, "devices", defaults.DEVICES), population=args.population, checkpoint_every=args.checkpoint_every,
                     checkpoint_dir=args.checkpoint_dir, keep_checkpoints=args.keep_checkpoints).checked()


def _run_study_run(args: argparse.Namespace) -> None:
    spec = study_spec(args)
    from .study import best_of, run_study, study_summary

    study = run_study(spec, progress=not args.quiet)
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
        incumbent = " (the rule's default settings)" if top["role"] == "default" else ""
        print(f"best: trial {top['trial']}{incumbent}, validation error {percent(top['val_error'])} "
              f"(test {percent(top['test_error'])}, epoch {top['best_epoch']})"
              + (f"; winner {top['winner']}" if "winner" in top else ""))


def _launch_arguments(p: argparse.ArgumentParser, campaign: bool = False) -> None:
    """The executor and its resources (shared by `study launch` and `campaign`)."""
    from .executors import names

    L = defaults.LAUNCH
    executors = ", ".join(names())
    if campaign:
        p.add_argument("--executor", default=None, help=f"{executors}: run every study's workers and evaluations as jobs "
                                                        "(default: none, everything in this process)")
        p.add_argument("--no-wait", action="store_true", help="with --executor: submit the tuning jobs and return; rerun the "
                                                              "same command once they are done to evaluate and report")
    else:
        p.add_argument("--executor", default=L["executor"], help=f"{executors} (default {L['executor']}: one sbatch job array; "
                                                                 "local: subprocesses here)")
    p.add_argument("--jobs", type=int, default=L["jobs"], help=f"array tasks, one worker each (default {L['jobs']})")
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--gpus-per-job", type=int, default=None, help="GPUs per job (default 1 on Slurm, 0 locally)")
    p.add_argument("--cpus-per-job", type=int, default=L["cpus_per_job"], help=f"CPUs per job (default {L['cpus_per_job']})")
    p.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB (default: the partition's)")
    p.add_argument("--time", type=float, default=L["time"], help=f"wall time per job in minutes (default {L['time']}); a "
                                                                 "timed-out job saves, is requeued and resumes")
    p.add_argument("--account", default=None, help="Slurm account")
    p.add_argument("--qos", default=None, help="Slurm quality of service")
    p.add_argument("--max-parallel", type=int, default=None, help="array throttle: at most this many jobs at once")
    p.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, passed as --KEY=VALUE (repeatable), e.g. constraint=a100")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before each worker (repeatable): module loads, environment activation")
    p.add_argument("--signal-delay", type=int, default=L["signal_delay_s"],
                   help=f"seconds before the wall time at which a job is told to save (USR2; default {L['signal_delay_s']})")
    p.add_argument("--max-timeouts", type=int, default=L["max_timeouts"],
                   help=f"times a job that reached its wall time is requeued (default {L['max_timeouts']}; preemptions always are)")
    p.add_argument("--log-dir", default=L["log_dir"], help=f"folder for the jobs' logs, on a file system every node mounts "
                                                          f"(default ./{L['log_dir']})")
    p.add_argument("--shared-path", action="append", default=[], metavar="DIR",
                   help=f"a folder every node mounts (repeatable; also ${defaults.SHARED_PATHS_ENV}): a journal storage must lie in one")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing (no study is created)")


def launch_spec(args: argparse.Namespace) -> Any:
    """The LaunchSpec of `study launch`'s (or `campaign`'s) arguments (checked against the storage later)."""
    from .spec import LaunchSpec, SlurmOptions

    slurm = SlurmOptions(partition=args.partition, account=args.account, qos=args.qos, mem_gb=args.mem_gb,
                         max_parallel=args.max_parallel, options=tuple(args.slurm_option))
    return LaunchSpec(executor=args.executor, jobs=args.jobs, time=args.time, gpus_per_job=args.gpus_per_job,
                      cpus_per_job=args.cpus_per_job, setup=tuple(args.setup), log_dir=args.log_dir,
                      signal_delay_s=args.signal_delay, max_timeouts=args.max_timeouts, shared_paths=tuple(args.shared_path),
                      dry_run=args.dry_run, slurm=slurm)


def _run_study_launch(args: argparse.Namespace) -> None:
    spec = study_spec(args)
    launch = launch_spec(args).checked(spec.storage)  # refused here, before torch, optuna or submitit load
    from .study.launch import dry_run, launch_study

    if launch.dry_run:
        print(dry_run(spec, launch))
        return
    launched = launch_study(spec, launch, say=print)
    if launched.executor.on_this_machine:
        print("waiting for the local jobs (they stop with this command)...", flush=True)
        ran = launched.wait()
        print(f"done: the workers ran {sum(r or 0 for r in ran)} trial(s) ({', '.join('failed' if r is None else str(r) for r in ran)})")


def _run_study_status(args: argparse.Namespace) -> None:
    from .study.status import show_status

    storage, rest = _positional_storage(args, max_rest=1)
    show_status(storage, rest[0] if rest else None, watch=args.watch, interval=args.interval, as_json=args.json)


def _run_study_list(args: argparse.Namespace) -> None:
    from .study import list_studies

    rows = list_studies(args.storage)
    if args.json:
        print(json.dumps(rows))
        return
    if not rows:
        print("no studies in this storage")
    for r in rows:
        val = percent(r["best_val_error"])
        test = "" if r["test_error_mean"] is None else f"  evaluated test {percent(r['test_error_mean'])}"
        print(f"{r['study']}  {r['finished']}/{r['budget']} trials  best val {val}{test}")


def _run_study_best(args: argparse.Namespace) -> None:
    from .study import best, train_command

    top = best(args.storage, args.study_name)
    if args.json:
        print(json.dumps(top))
        return
    print(f"study {top['study']}: best of {top['finished']} finished trials is trial {top['trial']}"
          + (" (the rule's default settings)" if top["role"] == "default" else ""))
    print(f"validation error {percent(top['val_error'])}  test error {percent(top['test_error'])}  "
          f"train error {percent(top['train_error'])}  (epoch {top['best_epoch']})")
    config = top["config"]
    width = max(map(len, config), default=0)
    for key, value in config.items():
        mark = "  (sampled)" if key in top["params"] else ""
        print(f"  {key:<{width}} = {value}{mark}")
    if "winner" in top:
        print(f"winner architecture: {top['winner']}")
    e = Evaluation.read(top.get("evaluation"))
    if e is not None and e.test_error_mean is not None:
        print(f"evaluated: test error {percent(e.test_error_mean)} ± {percent(e.test_error_std)} over seeds {e.seeds}")
    from .run_config import RunConfig

    run = RunConfig.from_stored(config, seeds=(top["seed"],), data_seed=top["data_seed"], device=top["device"] or defaults.DEVICES)
    print(f"reproduce: {train_command(run)}")


def _run_study_evaluate(args: argparse.Namespace) -> None:
    seeds = parse_seeds(args.seeds)
    from .study import evaluate_study

    result = evaluate_study(args.storage, args.study_name, seeds=seeds, epochs=args.epochs,
                            device=args.device, data_root=args.data_root, progress=False if args.quiet else None)
    if args.json:
        print(json.dumps(result))
        return
    e = Evaluation.read(result)
    if e.test_error_mean is None:
        print(f"every seed diverged: {e.diverged}")
        return
    print(f"test error {percent(e.test_error_at_best_val_mean)} ± {percent(e.test_error_at_best_val_std)} "
          f"at the epoch of best validation error (epochs {e.best_val_epochs}), "
          f"{percent(e.test_error_mean)} ± {percent(e.test_error_std)} at epoch {e.epochs}, "
          f"over seeds {e.seeds} (trial {e.trial})")
    for item in e.diverged:
        print(f"seed {item['seed']} diverged: {item['reason']}")


def _run_dashboard(args: argparse.Namespace) -> None:
    from .study import serve_dashboard

    serve_dashboard(args.storage, host=args.host, port=args.port, artifact_dir=args.artifact_dir)


# ---------------------------------------------------------------------------------------------
# analyze, demo, campaign


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="importances, tanh vs ReLU, stability and the paper's tables: plots and a report",
                       description="Analyse finished studies: write every figure and report.md / report.html under --out.",
                       parents=[_options("quiet")])
    p.add_argument("--storage", action="append", default=None,
                   help=STORAGE_HELP + "; repeatable: the studies of several storages are analysed together")
    p.add_argument("--study", action="append", default=None, metavar="PATTERN",
                   help="study-name glob, repeatable (default: every tuning study)")
    p.add_argument("--out", required=True, help="folder for figures and report")
    p.add_argument("--format", default="png", help="comma-separated figure formats: png, pdf, svg (default png; "
                                                   "PDFs on request)")
    p.add_argument("--figures", default="key", choices=("none", "key", "all"),
                   help="which figures: none; key (default: the summary figures the report shows); all (also one set "
                        "per study)")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> None:
    from .analysis import analyze
    from .storages import DEFAULT_STORAGE

    report = analyze(args.storage or [DEFAULT_STORAGE], args.study, Path(args.out), tuple(args.format.split(",")),
                     progress=not args.quiet, figures=args.figures)
    print(f"report: {report}")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="every trial as one CSV table, or as DeepCAVE runs", parents=[_options("storage")],
                       description="Export every trial of the matching studies: --format csv writes one tidy table "
                                   "(study, rule, dataset, architecture, activation, params, state, outcome, errors, "
                                   "best epoch, curves) to the file --out; --format deepcave writes one folder per study "
                                   "under --out in DeepCAVE's DataFrame-converter layout (configspace.csv, trials.csv; "
                                   "the epoch as budget; diverged runs at chance level, as in the report).")
    p.add_argument("positional", nargs="*", metavar="STORAGE", help="the storage (also --storage)")
    p.add_argument("--format", required=True, help=" or ".join(defaults.EXPORT_FORMATS))
    p.add_argument("--out", required=True, help="csv: the file to write; deepcave: the folder for the run folders")
    p.add_argument("--study", action="append", default=None, metavar="PATTERN",
                   help="study-name glob, repeatable (default: every study)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    if args.format.strip().lower() not in defaults.EXPORT_FORMATS:  # refused before pandas and Optuna load
        raise UsageError(f"unknown export format {args.format!r}; choose one of: {', '.join(defaults.EXPORT_FORMATS)}")
    storage, _ = _positional_storage(args, max_rest=0)
    from .analysis.export import export

    print(export(storage, args.format, Path(args.out), args.study))


def _add_demo_commands(sub: argparse._SubParsersAction) -> None:
    DEMO = defaults.DEMO
    seeds = _joined(DEMO["seeds"])
    p = sub.add_parser("demo", help="the whole study on the embedded digits data: every rule, analysis, report",
                       description="The paper's protocol at a small budget on digits: a tuning study for every rule and schedule "
                                   "on the fc and lc presets, once per activation, evaluation of each best configuration, "
                                   "then the analysis report.",
                       parents=[_options("devices", "workers", "population", "seeds", "rules", "quiet", seeds=seeds,
                                         population=DEMO["population"],
                                         workers=os.cpu_count() or 1, workers_help="processes (default: every core)")])
    p.add_argument("--out", default=DEMO["out"], help=f"folder for the storage, figures and report (default {DEMO['out']})")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/bioscale.db)")
    p.add_argument("--trials", type=int, default=DEMO["trials"], help=f"trials per study (default {DEMO['trials']})")
    p.add_argument("--epochs", type=int, default=DEMO["epochs"], help=f"epochs per trial (default {DEMO['epochs']})")
    p.add_argument("--activations", default=",".join(DEMO["activations"]),
                   help=f"one study per activation and rule (default {','.join(DEMO['activations'])})")
    _design_arguments(p, DEMO["sampler"], DEMO["pruner"])
    p.set_defaults(func=_run_demo)

    p = sub.add_parser("campaign", help="the paper's protocol on a real dataset: random search per rule, evaluation, report",
                       description="Random search over N configurations for every rule and schedule on one dataset and "
                                   "architecture, the best configuration re-evaluated with several seeds, then the report "
                                   "with the paper's numbers beside ours.",
                       parents=[_options("storage", "devices", "workers", "population", "set", "seeds", "data-root", "chance-patience",
                                         "rules", "quiet", workers_help="worker processes per study (default 1)",
                                         set="fix or narrow a parameter in every study")])
    p.add_argument("--dataset", required=True, help="mnist, fashion-mnist, cifar10, imagenet32 or digits")
    p.add_argument("--arch", required=True, help="preset fc, lc or conv, a spec string, or @STUDY (an architecture-stage winner)")
    CAMPAIGN = defaults.CAMPAIGN
    p.add_argument("--trials", type=int, default=CAMPAIGN["trials"],
                   help=f"configurations per rule and schedule (default {CAMPAIGN['trials']}, the paper's)")
    p.add_argument("--epochs", type=int, default=CAMPAIGN["epochs"],
                   help=f"epochs per configuration (default {CAMPAIGN['epochs']}; the paper ran 500)")
    p.add_argument("--protocol", default=CAMPAIGN["protocol"],
                   help="paper (default: the paper's Table 4 search; tanh, batch 128, whole-epoch alternation) or "
                        "extended (also activation, batch size, auxiliary size, alternation period)")
    p.add_argument("--activations", default=None,
                   help="e.g. tanh,relu: one study per activation and rule, each tuned on its own (the tanh-vs-ReLU experiment)")
    _design_arguments(p, CAMPAIGN["sampler"], defaults.PRUNER)
    p.add_argument("--out", default=None, help="folder for figures and report (default campaign-DATASET-ARCH)")
    p.add_argument("--format", default=_joined(CAMPAIGN["formats"]), help=f"figure formats (default {_joined(CAMPAIGN['formats'])})")
    _checkpoint_options(p, {})
    _launch_arguments(p, campaign=True)
    p.set_defaults(func=_run_campaign)


def _run_demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .workflows import demo, demo_campaign, demo_study

    template = replace(demo_study(), storage=args.storage, trials=args.trials, epochs=args.epochs, sampler=args.sampler,
                       pruner=args.pruner, shared_draws=args.shared_draws, population=args.population, devices=args.devices)
    campaign = demo_campaign(template, out=args.out, seeds=parse_seeds(args.seeds), rules=_names(args.rules),
                             activations=_names(args.activations) or (), side_by_side=args.workers).checked()
    print(demo(campaign, progress=not args.quiet).summary())


def _run_campaign(args: argparse.Namespace) -> None:
    from .spec import StudySpec
    from .workflows import campaign_spec, run

    template = StudySpec(trials=args.trials, epochs=args.epochs, sampler=args.sampler, pruner=args.pruner,
                         protocol=args.protocol, overrides=parse_overrides(args.set), chance_patience=args.chance_patience,
                         storage=args.storage, data_root=args.data_root, workers=args.workers, devices=args.devices,
                         population=args.population, checkpoint_every=args.checkpoint_every,
                         checkpoint_dir=args.checkpoint_dir, keep_checkpoints=args.keep_checkpoints,
                         shared_draws=args.shared_draws)
    launch = None
    if args.executor is not None:
        launch = launch_spec(args).checked(args.storage)  # refused before torch loads
    campaign = campaign_spec(args.dataset, args.arch, template, rules=_names(args.rules),
                             activations=_names(args.activations), seeds=parse_seeds(args.seeds), out=args.out,
                             formats=args.format.split(",")).checked()
    if launch is not None and launch.dry_run:
        from .study.launch import dry_run

        print(f"# {len(campaign.studies)} studies, each one job array like this:\n" + dry_run(campaign.studies[0], launch))
        return
    rerun = ["bioscale", *[a for a in sys.argv[1:] if a != "--no-wait"]] if launch is not None else None
    outcome = run(campaign, progress=not args.quiet, launch=launch, wait=not getattr(args, "no_wait", False), rerun=rerun)
    if outcome is not None:
        print(outcome.summary())


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="bioscale", description="Does this biologically plausible learning rule scale, and how fragile is it?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_study_commands(sub)
    _add_analyze(sub)
    _add_export(sub)
    _add_demo_commands(sub)
    return parser


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
