"""The study specification, the static names the command line checks without torch, and the storage names in code only."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from bioscale import contract, defaults
from bioscale.errors import UsageError
from bioscale.spec import CampaignSpec, StudySpec, campaign_studies

REPO = Path(__file__).resolve().parents[1]
# compare_studies.py reads storages that older code wrote, with that code: it names what it drops itself.
SOURCES = [p for folder in ("bioscale", "study", "spaces", "analysis", "benchmarks") for p in sorted((REPO / folder).rglob("*.py"))
           if p.name not in ("contract.py", "compare_studies.py")]


# ---------------------------------------------------------------------------------------------
# The spec


def test_a_spec_round_trips_through_a_dict_and_checks_once():
    spec = StudySpec(rule="dtp-alternating", trials=3, epochs=2, overrides={"forward_lr": "1e-3"}, devices=("cpu",))
    assert StudySpec.from_dict(spec.to_dict()) == spec
    checked = spec.checked()
    assert (checked.rule, checked.schedule, checked.label) == ("dtp", "alternating", "dtp-alternating")
    assert checked.checked() == checked  # checking is idempotent
    assert StudySpec(rule="sdtp").checked().schedule == "parallel"  # the rule's default schedule
    campaign = CampaignSpec(studies=(checked, replace(checked, rule="bp", schedule=None)), seeds=(0, 1))
    assert CampaignSpec.from_dict(campaign.to_dict()) == campaign


def test_no_public_function_of_the_study_driver_or_the_workflows_takes_more_than_eight_parameters():
    paths = sorted((REPO / "study").glob("*.py")) + [REPO / "bioscale" / "workflows.py", REPO / "bioscale" / "spec.py"]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                names = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
                assert len([n for n in names if n not in ("self", "cls")]) <= 8, f"{path.name}: {node.name}{tuple(names)}"


def test_every_field_of_the_spec_is_json_and_has_a_default():
    import json

    values = StudySpec().to_dict()
    assert set(values) == {f.name for f in fields(StudySpec)}
    json.dumps(values)


@pytest.mark.parametrize("change, message", [
    ({"rule": "nope"}, "unknown rule 'nope'"),
    ({"rule": None}, "needs a rule"),
    ({"rule": "fa", "schedule": "parallel"}, "has no schedule"),
    ({"rule": "dtp", "schedule": "sideways"}, "no schedule 'sideways'"),
    ({"rule": "dtp-parallel", "schedule": "alternating"}, "conflicting schedules"),
    ({"rule": "fa", "stage": "finals"}, "unknown stage"),
    ({"rule": "fa", "dataset": "imagenet-1k"}, "unknown dataset"),
    ({"rule": "fa", "trials": 0}, "trials must be a whole number >= 1"),
    ({"rule": "fa", "epochs": 1.5}, "epochs must be a whole number"),
    ({"rule": "fa", "population": 0}, "population must be"),
    ({"rule": "fa", "sampler": "grid"}, "unknown sampler"),
    ({"rule": "fa", "pruner": "sometimes"}, "unknown pruner"),
    ({"rule": "fa", "pruner": "best-after:x"}, "bad best-after epoch"),
    ({"rule": "fa", "protocol": "mine"}, "unknown protocol"),
    ({"rule": "fa", "activation": "sigmoid"}, "activation='sigmoid'"),
])
def test_bad_specs_are_refused_in_one_line(change, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as error:
        StudySpec(**change).checked()
    assert "\n" not in str(error.value)


def test_a_campaign_is_specs_for_every_rule_schedule_and_activation():
    template = StudySpec(dataset="digits", trials=2, epochs=1, storage="sqlite:///c.db")
    studies = campaign_studies(template, ["fc"], ["bp", "dtp"], ["tanh", "relu"])
    assert [(s.rule, s.schedule, s.activation) for s in studies] == [
        ("bp", None, "tanh"), ("bp", None, "relu"), ("dtp", "alternating", "tanh"), ("dtp", "alternating", "relu"),
        ("dtp", "parallel", "tanh"), ("dtp", "parallel", "relu")]
    assert all(s.default_trial and s.trials == 2 and s.storage == "sqlite:///c.db" for s in studies)
    with pytest.raises(UsageError, match="share one storage"):
        CampaignSpec(studies=(studies[0], replace(studies[1], storage="sqlite:///other.db"))).checked()


# ---------------------------------------------------------------------------------------------
# Static names, checked against the registries they mirror


def test_the_static_names_match_the_registries():
    from bioscale import catalogue, rules, spaces
    from bioscale.study import _samplers

    assert sorted(catalogue.RULES) == rules.names()  # every catalogue line has its rule, and no rule lacks a line
    assert all(not s or s[0] == rules.settings(n)["schedule"] for n, s in catalogue.schedules().items())  # default first
    assert defaults.PROTOCOLS == spaces.PROTOCOLS and defaults.SAMPLERS == _samplers.SAMPLERS
    for name in defaults.PRUNERS:
        _samplers.check_pruner(name.partition("[")[0], 10)
    assert defaults.TRAINING == spaces.TRAINING_DEFAULTS and set(defaults.TRAINING) == set(spaces.TRAINING)
    assert rules.settings("fa")  # the registry and the table agree on a rule the table knows


def test_a_rule_needs_its_catalogue_line_and_with_it_is_known_to_the_spec(monkeypatch):
    from bioscale import catalogue
    from bioscale.rules.base import _REGISTRY, GradientRule

    with pytest.raises(TypeError, match="no line in bioscale/catalogue.py"):
        type("Unlisted", (GradientRule,), {"name": "test-unlisted"})
    assert "test-unlisted" not in _REGISTRY
    monkeypatch.setitem(catalogue.RULES, "test-plugin", catalogue.RuleFacts("test-plugin", "a plug-in", "backprop", 99,
                                                                            "Nobody", 2026))
    monkeypatch.delitem(_REGISTRY, "test-plugin", raising=False)
    plugin = type("Plugin", (GradientRule,), {"name": "test-plugin"})
    try:
        assert (plugin.family, plugin.order, plugin.citation, plugin.year) == ("backprop", 99, "Nobody", 2026)
        assert StudySpec(rule="test-plugin").checked().rule == "test-plugin"
    finally:
        _REGISTRY.pop("test-plugin", None)


def test_the_defaults_table_is_what_the_library_uses():
    import inspect

    from bioscale import train

    fit = inspect.signature(train.fit).parameters
    assert fit["chance_patience"].default == defaults.CHANCE_PATIENCE and fit["batch_size"].default == defaults.BATCH_SIZE
    assert inspect.signature(train.train).parameters["activation"].default == defaults.ACTIVATION
    spec = StudySpec()
    assert (spec.chance_patience, spec.trials, spec.epochs, spec.sampler) == (
        defaults.CHANCE_PATIENCE, defaults.TRIALS, defaults.EPOCHS, defaults.SAMPLER)


# ---------------------------------------------------------------------------------------------
# Every storage name in contract.py only

# Names so particular to the storage that they may not appear as a string anywhere else.
DISTINCTIVE = {contract.END_REASON, contract.WINNER_TRIAL, contract.SAMPLER_SETTINGS,
               "test_errors_at_best_val", "test_error_at_best_val_mean", "test_error_at_best_val_std", "best_val_epochs",
               "bioscale_version"}
ATTRIBUTE_NAMES = set(contract.TRIAL_ATTRS) | set(contract.STUDY_ATTRS) | {f.name for f in fields(contract.Evaluation)}


def _reads_attributes(node: ast.AST) -> bool:
    """Whether an expression is a trial's or a study's attributes (or a variable holding them)."""
    text = ast.unparse(node)
    return text.endswith(("user_attrs", "system_attrs")) or text in ("attrs", "existing", "evaluation", "record")


def _is_storage_attributes(node: ast.AST) -> bool:
    """Whether an expression is a trial's or a study's attribute mapping itself (user or Optuna's system attributes)."""
    return ast.unparse(node).endswith(("user_attrs", "system_attrs"))


def attribute_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of each contract attribute name written as a string literal where a storage key goes."""
    found = []

    def literal(node: ast.AST | None) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        keys: list[ast.AST | None] = []  # keys that name a contract attribute when they are one of its names
        anything: list[ast.AST | None] = []  # keys of a storage's own attribute mappings: no literal at all
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("set_user_attr", "set_system_attr") and node.args:
                anything.append(node.args[0])
            if node.func.attr in ("get", "pop") and node.args and _reads_attributes(node.func.value):
                (anything if _is_storage_attributes(node.func.value) else keys).append(node.args[0])
        if isinstance(node, ast.Call):
            anything += [k for kw in node.keywords if kw.arg in ("user_attrs", "system_attrs")
                         and isinstance(kw.value, ast.Dict) for k in kw.value.keys]
        if isinstance(node, ast.Subscript) and _reads_attributes(node.value):
            (anything if _is_storage_attributes(node.value) else keys).append(node.slice)
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) \
                and any(_reads_attributes(c) for c in node.comparators):
            (anything if any(_is_storage_attributes(c) for c in node.comparators) else keys).append(node.left)
        found += [(k.lineno, literal(k)) for k in keys if literal(k) in ATTRIBUTE_NAMES]
        found += [(k.lineno, literal(k)) for k in anything if literal(k) is not None]
        if literal(node) in DISTINCTIVE:
            found.append((node.lineno, literal(node)))
    return sorted(set(found))


def test_the_checker_finds_attribute_literals():
    code = ('t.set_user_attr("seed", 1)\nx = trial.user_attrs.get("curve")\ny = study.user_attrs["winner"]\n'
            'z = "role" in t.user_attrs\nw = "end_reason"\nok = config["arch"]\nv = t.system_attrs.get("fixed_params")\n'
            'u = create_trial(user_attrs={"outcome": 1})\nfine = attrs.get("anything")\n')
    assert [name for _, name in attribute_literals(ast.parse(code))] == [
        "seed", "curve", "winner", "role", "end_reason", "fixed_params", "outcome"]


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(REPO))) for p in SOURCES])
def test_no_storage_name_is_spelled_outside_the_contract(path):
    found = attribute_literals(ast.parse(path.read_text()))
    assert not found, f"{path.relative_to(REPO)}: write these through bioscale.contract: {found}"


def test_end_reasons_are_structured():
    assert contract.read_end_reason("diverged: loss became nan in epoch 2") == contract.DIVERGED
    assert contract.read_end_reason("stalled: error stayed at chance (0.90) for 5 epochs") == contract.STALLED
    assert contract.read_end_reason("diverged: error stayed at chance (0.90) for 5 epochs") == contract.STALLED  # older
    assert contract.read_end_reason("out of memory on cuda:0: CUDA out of memory") == contract.OUT_OF_MEMORY
    assert contract.read_end_reason("error: RuntimeError: boom") == contract.ERROR
    assert contract.read_end_reason("pruned") == contract.PRUNED and contract.read_end_reason(None) is None
    assert contract.read_end_reason("errors galore") is None
    assert contract.STALLED.text("why") == "stalled: why"


def test_the_evaluation_record_reads_back_what_it_writes_and_reads_old_records():
    record = contract.Evaluation(seeds=[0, 1], test_errors=[0.1, 0.2], test_error_mean=0.15, epochs=3,
                                 diverged=[{"seed": 2, "reason": "loss became nan"}])
    assert contract.Evaluation.read(record.to_attr()) == record
    assert "diverged" not in contract.Evaluation(seeds=[0]).to_attr()
    old = contract.Evaluation.read({"seeds": [0], "test_error_mean": 0.3, "unknown": 1})
    assert old.test_error_mean == 0.3 and old.test_errors_at_best_val == [] and old.epochs is None
    assert contract.Evaluation.read({}) is None and contract.Evaluation.read("junk") is None


# ---------------------------------------------------------------------------------------------
# Feedback in seconds: help and refusals load no torch


def _loaded_after(argv: list[str]) -> tuple[int, set[str]]:
    code = ("import sys\nfrom bioscale.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    code = e.code\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'pandas', 'optuna', 'matplotlib', 'sklearn', 'scipy')))\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    return done.returncode, set(eval(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["study", "run", "--help"], ["study", "evaluate", "--help"],
                                  ["demo", "--help"], ["campaign", "--help"], ["analyze", "--help"],
                                  ["study", "run", "--rule", "nope"], ["train", "--rule", "nope"],
                                  ["study", "run", "--rule", "fa", "--trials", "0"],
                                  ["study", "run", "--rule", "fa", "--pruner", "sometimes"],
                                  ["train", "--rule", "fa", "--dataset", "nope"],
                                  ["train", "--rule", "fa", "--activation", "sigmoid"],
                                  ["study", "evaluate", "--seeds", "a,b"],
                                  ["demo", "--rules", "nope"], ["demo", "--activations", "sigmoid"],
                                  ["campaign", "--dataset", "digits", "--arch", "fc", "--rules", "nope"],
                                  ["study", "launch", "--help"], ["study", "status", "--help"],
                                  ["study", "launch", "--rule", "fa", "--jobs", "0", "--storage", "postgresql://u@h/d"],
                                  ["study", "launch", "--rule", "fa", "--executor", "pbs"],
                                  ["study", "launch", "--rule", "fa", "--storage", "sqlite:///x.db"]],
                         ids=lambda a: " ".join(a))
def test_help_and_refusals_import_no_heavy_library(argv):
    code, loaded = _loaded_after(argv)
    assert code in (0, 2) and not loaded, f"{' '.join(argv)} imported {sorted(loaded)}"


def test_importtime_of_help_holds_no_torch():
    code = "from bioscale.cli import main; main(['--help'])"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 0 and "bioscale.cli" in imported and "torch" not in imported


@pytest.mark.slow
def test_help_and_a_refusal_answer_within_a_few_bare_interpreter_starts():
    import time

    def best_of(argv: list[str], n: int = 3) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True)
            times.append(time.perf_counter() - start)
        return min(times)

    bare = best_of(["-c", "pass"])
    for argv in (["-m", "bioscale.cli", "--help"], ["-m", "bioscale.cli", "study", "run", "--rule", "nope"]):
        # Issue 23: under 1 s on two cores. As a ratio to a bare interpreter (machines differ): a CLI that
        # imports torch (8 s here) or pandas (1.7 s) is far beyond 15 starts of a bare one (0.04 s).
        assert best_of(argv) < max(15 * bare, 0.5), argv
