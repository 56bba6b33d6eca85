"""Before/after check for a refactor: train every rule × family on digits and fingerprint the outcome.

Trains every registered rule (each target-propagation schedule apart) on the fc, lc and conv
presets for two epochs as a population of two members with per-member learning rates, and
records each member's curve (loss and errors, exact floats) and a SHA-256 of every final tensor
(net, rule state, optimizer moments). It also checks a checkpoint round trip, dropping a pruned
member, a float64 population with a diverging member, and a tiny Optuna study. Run it on the old
code and on the new, then compare:

    python benchmarks/compare_refactor.py --out /tmp/before.json       # in the old tree
    python benchmarks/compare_refactor.py --out /tmp/after.json        # in the new tree
    python benchmarks/compare_refactor.py --compare /tmp/before.json /tmp/after.json

It only uses what both sides offer: rules.create/get, build_net, data.load, fit (with a RunConfig where there is one),
rule.state_dict/load_state_dict, rule.optimizers and study.run_study (with a StudySpec where there is one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

import torch

from bioscale import rules
from bioscale.data import load
from bioscale.defaults import CHANCE_PATIENCE
from bioscale.nets import build_net
from bioscale.train import fit

FAMILIES = ("fc", "lc", "conv")
SEEDS = (0, 1)
LRS = [1e-3, 3e-3]
EPOCHS, BATCH, FIT_SEED = 2, 64, 3
SMALL = {"aux_size": 16}  # AO-SDTP's auxiliary output, kept small


def variants() -> list[tuple[str, str, dict]]:
    """(label, rule, settings) for every rule, each schedule of a rule that has them."""
    out = []
    for name in rules.names():
        own = {k: v for k, v in SMALL.items() if k in rules.settings(name)}
        for schedule in rules.get(name).schedules or (None,):
            settings = {**own, **({"schedule": schedule} if schedule else {})}
            out.append((name + (f"-{schedule}" if schedule else ""), name, settings))
    return out


def _sha(modules: list[tuple[str, torch.nn.Module]]) -> str:
    h = hashlib.sha256()
    for prefix, module in modules:
        for key, tensor in [*module.named_parameters(), *module.named_buffers()]:
            h.update(f"{prefix}.{key}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def digest(rule: rules.Rule) -> dict[str, str]:
    """SHA-256 of every tensor the rule trains or keeps: the net with its own state ("weights"), and each optimizer's buffers apart.

    Apart, so that a rule that drops a redundant optimizer (KP's B_l, whose Adam moments were W_l's) shows that alone.
    """
    out = {"weights": _sha([("net", rule.net), ("state", rule.state)])}
    out.update({f"optimizer {name}": _sha([(name, optimizer)]) for name, optimizer in rule.optimizers().items()})
    return out


def curves(results) -> list[dict]:
    return [{"loss": [r.loss.hex() for r in res.history], "train": [r.train_error for r in res.history],
             "val": [r.val_error for r in res.history], "test": [r.test_error for r in res.history],
             "diverged": None if res.diverged is None else [res.diverged.reason, res.diverged.epoch],
             "pruned_at": res.pruned_at} for res in results]


def run_fit(rule: rules.Rule, data, *, epochs: int, seed: int, chance_patience: int = CHANCE_PATIENCE, **options):
    """`fit` with a run configuration (issue 31) where there is one, else with the keywords before it."""
    try:
        from bioscale.run_config import RunConfig
    except ImportError:
        return fit(rule, data, epochs=epochs, batch_size=BATCH, seed=seed, chance_patience=chance_patience, **options)
    config = RunConfig(rule=rule.name, epochs=epochs, batch_size=BATCH, data_seed=seed, chance_patience=chance_patience)
    return fit(rule, data, config, **options)


def make(data, name: str, family: str, settings: dict, seeds=SEEDS, dtype=torch.float32, **more) -> rules.Rule:
    net = build_net(family, "digits", data.input_shape, data.n_classes, seeds=seeds).to(dtype)
    return rules.create(name, net, **settings, **more)


def rule_cases(data) -> dict:
    out = {}
    for label, name, settings in variants():
        for family in FAMILIES:
            rule = make(data, name, family, settings, forward_lr=LRS)
            results = run_fit(rule, data, epochs=EPOCHS, seed=FIT_SEED, progress=False)
            out[f"{label}/{family}"] = {"curves": curves(results), "digest": digest(rule)}
    return out


def checkpoint_cases(data) -> dict:
    """Train one epoch, restore into a rule on other seeds, train both one more: both fingerprints."""
    out = {}
    for label, name, settings in variants():
        rule = make(data, name, "fc", settings, forward_lr=LRS)
        run_fit(rule, data, epochs=1, seed=FIT_SEED, progress=False)
        other = make(data, name, "fc", settings, seeds=(5, 6), forward_lr=LRS)
        other.load_state_dict(rule.state_dict())
        pair = []
        for r in (rule, other):
            results = run_fit(r, data, epochs=1, seed=FIT_SEED + 1, progress=False)
            pair.append({"curves": curves(results), "digest": digest(r)})
        out[f"{label}/fc"] = pair
    return out


def drop_cases(data) -> dict:
    """A three-member population whose middle member is pruned after epoch 1 and dropped from every tensor."""
    out = {}
    for label, name, settings in variants():
        rule = make(data, name, "fc", settings, seeds=(0, 1, 2), forward_lr=[1e-3, 2e-3, 3e-3])
        results = run_fit(rule, data, epochs=3, seed=FIT_SEED, progress=False, drop_stopped=True,
                      callback=lambda member, record: not (member == 1 and record.epoch == 1))
        out[f"{label}/fc"] = {"curves": curves(results), "digest": digest(rule)}
    return out


def divergence_cases(data) -> dict:
    """float64, one member with forward_lr 1e38 beside a healthy one: what fit reports (issue 23 item 6 changes this)."""
    data64 = load("digits", device="cpu")
    data64.train_x, data64.test_x = data64.train_x.double(), data64.test_x.double()
    if data64.val_x is not None:
        data64.val_x = data64.val_x.double()
    out = {}
    for name in ("bp", "dtp"):
        rule = make(data64, name, "fc", {}, dtype=torch.float64, forward_lr=[1e-3, 1e38])
        results = run_fit(rule, data64, epochs=3, seed=FIT_SEED, progress=False, chance_patience=0)
        out[name] = {"curves": curves(results)}
    return out


def study_case() -> dict:
    """A tiny random-search study of DTP (parallel) in populations of two: every trial's params, curve and state."""
    from bioscale.study import run_study

    with tempfile.TemporaryDirectory() as folder:
        settings = dict(trials=4, schedule="parallel", storage=f"sqlite:///{os.path.join(folder, 's.db')}",
                        sampler="random", epochs=2, devices="cpu", population=2, seed=1)
        try:  # the study specification (issue 23) ...
            from bioscale.spec import StudySpec

            study = run_study(StudySpec(rule="dtp", dataset="digits", arch="fc", **settings), progress=False)
        except ImportError:  # ... or the keywords before it
            study = run_study("tune", "dtp", "digits", "fc", progress=False, **settings)
        return {str(t.number): {"params": t.params, "state": t.state.name, "value": t.value,
                                "curve": t.intermediate_values} for t in study.trials}


def run(out_path: str) -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load("digits", device="cpu")
    report = {"torch": torch.__version__, "rules": rule_cases(data), "checkpoint": checkpoint_cases(data),
              "drop": drop_cases(data), "divergence": divergence_cases(data), "study": study_case()}
    report = json.loads(json.dumps(report, default=str))
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    print(f"| case | member 0 final loss | member 1 final loss | digest |")
    print("|---|---|---|---|")
    for case, record in report["rules"].items():
        losses = [float.fromhex(c["loss"][-1]) if c["loss"] else None for c in record["curves"]]
        print(f"| {case} | {losses[0]} | {losses[1]} | {record['digest']['weights'][:16]} |")
    print(f"wrote {out_path} in {time.perf_counter() - start:.0f} s")


def compare(before_path: str, after_path: str) -> int:
    """Print every case that differs; exit status 1 when any does."""
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    differ = []
    for section in ("rules", "checkpoint", "drop", "divergence", "study"):
        keys = sorted(set(before.get(section, {})) | set(after.get(section, {})))
        same = 0
        for key in keys:
            a, b = before.get(section, {}).get(key), after.get(section, {}).get(key)
            if a == b:
                same += 1
            else:
                differ.append((section, key, a, b))
        print(f"{section}: {same}/{len(keys)} identical")
    for section, key, a, b in differ:
        print(f"DIFFERS {section}/{key}:")
        for path, x, y in differences(a, b):
            print(f"  {path or '.'}\n    before: {json.dumps(x)[:300]}\n    after:  {json.dumps(y)[:300]}")
    return 1 if differ else 0


def differences(a, b, path: str = "") -> list[tuple[str, object, object]]:
    """(path, before, after) of every leaf where two JSON values differ; a key on one side only is None on the other."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in differences(a.get(key), b.get(key), f"{path}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}/{i}")]
    return [] if a == b else [(path, a, b)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two such files")
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if not args.out:
        parser.error("give --out FILE or --compare BEFORE AFTER")
    run(args.out)


if __name__ == "__main__":
    main()
