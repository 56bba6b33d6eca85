"""The study driver on real SQLite and journal storages: stages, budget, resume, failures, pruning, CLI."""

import json
import shlex
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from bioscale import catalogue, rules, spaces
from bioscale.cli import main
from bioscale.rules.base import _REGISTRY, GradientRule
from bioscale.spec import StudySpec
from bioscale.study import best, evaluate_study, label, list_studies, run_study, study_name

from conftest import bioscale_process, dashboard_studies

CONTRACT_TRIAL_ATTRS = {"train_error", "val_error", "test_error", "best_epoch", "curve", "seconds", "device", "seed",
                        "versions", "config"}
CONTRACT_STUDY_ATTRS = {"stage", "dataset", "arch", "rule", "schedule", "label", "epochs", "sampler", "pruner", "fixed",
                        "bioscale_version"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(capsys, *args):
    """Run `bioscale ARGS` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def load(url, name):
    return optuna.load_study(study_name=name, storage=url)


def finished(study):
    return [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_names_follow_the_contract():
    assert label("fa") == "fa" and label("dtp", "alternating") == "dtp-alternating"
    assert study_name("tune", "digits", "fc", "dtp-alternating") == "tune:digits:fc:dtp-alternating"


@pytest.fixture(scope="module")
def fa_study(tmp_path_factory, one_torch_thread):
    """The issue's acceptance command, run once for the tests that read its study."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fa') / 'study.db'}"
    start = time.perf_counter()
    code = main(["study", "run", "--stage", "tune", "--rule", "fa", "--dataset", "digits", "--arch", "fc",
                 "--trials", "8", "--epochs", "3", "--storage", url])
    return url, code, time.perf_counter() - start


def test_tune_stage_runs_the_budget_and_records_the_contract(fa_study):
    url, code, seconds = fa_study
    assert code == 0
    study = load(url, "tune:digits:fc:fa")
    trials = study.get_trials()
    assert len(trials) == len(finished(study)) == 8
    assert CONTRACT_STUDY_ATTRS <= set(study.user_attrs) and study.metric_names == ["validation error"]
    attrs = study.user_attrs
    assert (attrs["stage"], attrs["rule"], attrs["schedule"], attrs["label"], attrs["epochs"]) == ("tune", "fa", None, "fa", 3)
    assert spaces.space_from_json(attrs["space"]) == spaces.tuning_space("fa")
    for trial in trials:
        assert CONTRACT_TRIAL_ATTRS <= set(trial.user_attrs), trial.number
        curve = trial.user_attrs["curve"]
        assert list(trial.intermediate_values) == list(range(1, len(curve["val"]) + 1)) and curve["val"]
        assert curve["val"] == [trial.intermediate_values[e] for e in trial.intermediate_values]
        assert set(trial.params) == set(spaces.tuning_space("fa"))
        assert trial.user_attrs["config"]["forward_lr"] == trial.params["forward_lr"]
        assert trial.user_attrs["seed"] == trial.number and trial.user_attrs["device"] == "cpu"
        if trial.state == TrialState.COMPLETE:
            assert len(curve["val"]) == 3 and "end_reason" not in trial.user_attrs
            assert trial.value == min(curve["val"]) == trial.user_attrs["val_error"]
            best_epoch = trial.user_attrs["best_epoch"]
            assert trial.user_attrs["test_error"] == curve["test"][best_epoch - 1]  # at the best validation epoch
        else:
            assert trial.user_attrs["end_reason"]


def test_best_prints_the_best_configuration(fa_study, capsys):
    url, _, _ = fa_study
    code, out, _ = cli(capsys, "study", "best", "--storage", url)
    study = load(url, "tune:digits:fc:fa")
    assert code == 0 and f"trial {study.best_trial.number}" in out
    assert "forward_lr" in out and "validation error" in out and "bioscale train --rule fa" in out
    top = best(url, "tune:digits:fc:fa")
    assert top["val_error"] == study.best_value and top["params"] == study.best_trial.params
    code, out, _ = cli(capsys, "study", "list", "--storage", url, "--json")
    (row,) = json.loads(out)
    assert row["study"] == "tune:digits:fc:fa" and row["finished"] == row["budget"] == 8


def test_a_rerun_resumes_and_the_budget_is_global(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["study", "run", "--rule", "bp", "--trials", "2", "--epochs", "1", "--storage", url, "--study-name", "s"]
    assert cli(capsys, *args)[0] == 0
    assert cli(capsys, *args)[0] == 0
    assert len(load(url, "s").get_trials()) == 2  # nothing more to do
    assert cli(capsys, *args[:4], "--trials", "3", *args[6:])[0] == 0
    assert len(finished(load(url, "s"))) == 3
    code, _, err = cli(capsys, *args[:6], "--epochs", "2", *args[8:])
    assert code == 2 and "exists with epochs=1" in err and len(load(url, "s").get_trials()) == 3


@pytest.mark.parametrize("args, message", [
    (["--rule", "nope"], "unknown rule 'nope'"),
    (["--rule", "fa", "--set", "forward_beta2=1.5"], "out of range"),
    (["--rule", "fa", "--set", "colour=blue"], "unknown parameter 'colour'"),
    (["--rule", "fa", "--set", "forward_lr"], "malformed --set"),
    (["--rule", "fa", "--schedule", "alternating"], "has no schedule"),
    (["--rule", "fa", "--arch", "7*xx"], "bad layer"),
    (["--rule", "fa", "--pruner", "sometimes"], "unknown pruner"),
    (["--rule", "fa", "--arch", "@missing"], "no study 'missing'"),
    (["--stage", "architecture", "--rule", "fa", "--arch", "lc", "--set", "kernel=4"], "kernels odd"),
])
def test_bad_input_is_one_line_exit_2_and_no_study(tmp_path, capsys, args, message):
    db = tmp_path / "s.db"
    code, out, err = cli(capsys, "study", "run", "--trials", "1", "--epochs", "1", "--storage", f"sqlite:///{db}", *args)
    assert code == 2 and message in err and err.startswith("bioscale: error:") and err.count("\n") == 1
    assert not db.exists() or optuna.get_all_study_summaries(f"sqlite:///{db}") == []


@pytest.mark.parametrize("storage, message", [
    ("sqlite:////no/such/folder/x.db", "does not exist"),
    ("redis+cluster://x", "unknown storage scheme"),
    ("postgresql://bioscale:pw@127.0.0.1:1/db", "cannot open storage"),
    ("notes.txt", "cannot read storage"),
])
def test_bad_storage_is_refused_before_anything_is_created(tmp_path, capsys, storage, message):
    code, _, err = cli(capsys, "study", "run", "--rule", "fa", "--trials", "1", "--storage", storage)
    assert code == 2 and message in err and err.count("\n") == 1
    assert "pw" not in err  # passwords stay out of messages


@pytest.mark.parametrize("population", [1, 4])
def test_a_diverging_trial_is_pruned_with_its_reason_and_the_study_goes_on(tmp_path, capsys, population):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    # Random search over an absurd and a sane learning rate: seed 0 draws both among four trials
    # (with a population of 4, all in one batched model: the sane members train on untouched).
    code, _, _ = cli(capsys, "study", "run", "--rule", "bp", "--trials", "4", "--epochs", "2", "--storage", url,
                     "--sampler", "random", "--set", "forward_lr=1e-3,1e30", "--set", "activation=relu",
                     "--population", str(population))
    assert code == 0
    trials = load(url, "tune:digits:fc:bp").get_trials()
    diverged = [t for t in trials if t.params["forward_lr"] == 1e30]
    sane = [t for t in trials if t.params["forward_lr"] == 1e-3]
    assert diverged and sane and len(trials) == 4
    for trial in diverged:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["end_reason"].startswith("diverged: loss became nan")
    assert all(t.state == TrialState.COMPLETE for t in sane)
    assert max(t.number for t in sane) > min(t.number for t in diverged)  # trials went on after a divergence


def catalogue_line(monkeypatch, name: str) -> None:
    """The one catalogue line a test rule needs, for this test only."""
    monkeypatch.setitem(catalogue.RULES, name, catalogue.RuleFacts(name, "a test rule", "backprop", 99, "Nobody", 2026))


@pytest.fixture
def exploding_rule(monkeypatch):
    """A rule registered for one test, whose every update raises: the study must record it and go on."""
    catalogue_line(monkeypatch, "test-exploding")

    class Exploding(GradientRule):
        name = "test-exploding"  # registers itself on creation

        def __init__(self, net, *, forward_lr: float = 1e-3, forward_beta1: float = 0.9, forward_beta2: float = 0.999,
                     forward_eps: float = 1e-8, fuse: int = 3) -> None:
            super().__init__(net, forward_lr=forward_lr, forward_beta1=forward_beta1, forward_beta2=forward_beta2,
                             forward_eps=forward_eps)
            self.fuse = fuse

        def task_loss(self, x, y):
            raise RuntimeError("boom")

    yield Exploding.name
    _REGISTRY.pop(Exploding.name, None)


def test_failing_trials_are_recorded_counted_and_do_not_stop_the_study(tmp_path, exploding_rule):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    # A rule no spaces module declares gets the catalogue's names that it has.
    assert set(spaces.tuning_space(exploding_rule)) == {"activation", "batch_size", "forward_lr", "forward_beta2", "forward_eps"}
    study = run_study(StudySpec(rule=exploding_rule, trials=3, epochs=1, storage=url), progress=False)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["end_reason"] == "error: RuntimeError: boom" for t in trials)


@pytest.mark.slow
def test_two_local_workers_share_one_sqlite_study_exactly(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    code, out, _ = cli(capsys, "study", "run", "--rule", "bp", "--trials", "6", "--epochs", "2", "--storage", url,
                       "--workers", "2", "--set", "batch_size=64", "--json")
    assert code == 0 and json.loads(out)["finished"] == 6
    trials = load(url, "tune:digits:fc:bp").get_trials()
    assert sorted(t.number for t in trials) == list(range(6)) and len(finished(load(url, "tune:digits:fc:bp"))) == 6
    assert len({t.user_attrs["worker"].rsplit(":", 1)[0] for t in trials}) == 2  # both workers took trials


def test_journal_storage_recovers_a_dead_workers_trial(tmp_path):
    path = tmp_path / "j.log"
    url = f"journal:///{path}"
    name = "tune:digits:fc:bp"
    run_study(StudySpec(rule="bp", trials=1, epochs=1, storage=url, overrides={"batch_size": "256"}), progress=False)
    # A trial left RUNNING by a worker process that has since died.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.load_study(study_name=name, storage=storage)
    orphan = study.ask({k: v for k, v in spaces.tuning_space("bp").items() if k != "batch_size"})
    orphan.set_user_attr("worker", f"{__import__('socket').gethostname()}:{dead.pid}:{orphan.number}")
    orphan.set_user_attr("seed", 7)
    study = run_study(StudySpec(rule="bp", trials=3, epochs=1, storage=url, overrides={"batch_size": "256"}),
                                progress=False)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state == TrialState.COMPLETE and retry.params == orphan.params and retry.user_attrs["seed"] == 7
    assert len(finished(study)) == 3 and not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_architecture_stage_winner_feeds_the_tune_stage_and_evaluate_records_seeds(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    code, _, _ = cli(capsys, "study", "run", "--stage", "architecture", "--rule", "bp", "--arch", "lc", "--trials", "2",
                     "--epochs", "1", "--storage", url, "--set", "depth=1:2")
    assert code == 0
    arch_study = load(url, "architecture:digits:lc:bp")
    winner = arch_study.user_attrs["winner"]
    assert winner == arch_study.best_trial.user_attrs["config"]["arch"] and winner.startswith("lc:")
    assert {"depth", "channels", "kernel", "width"} == set(arch_study.best_trial.params)
    code, _, _ = cli(capsys, "study", "run", "--rule", "fa", "--arch", "@architecture:digits:lc:bp", "--trials", "1",
                     "--epochs", "1", "--storage", url, "--study-name", "tuned")
    tuned = load(url, "tuned")
    assert code == 0 and tuned.user_attrs["arch_spec"] == winner and tuned.trials[0].user_attrs["config"]["arch"] == winner
    evaluation = evaluate_study(url, "tuned", seeds=(0, 1), progress=False)
    assert evaluation == load(url, "tuned").user_attrs["evaluation"]
    assert evaluation["seeds"] == [0, 1] and len(evaluation["test_errors"]) == 2 and evaluation["epochs"] == 1
    errors = evaluation["test_errors"]
    assert evaluation["test_error_mean"] == pytest.approx(sum(errors) / 2) and evaluation["test_error_std"] >= 0
    assert evaluation["config"]["arch"] == winner
    assert {r["study"] for r in list_studies(url)} == {"architecture:digits:lc:bp", "tuned"}


def test_target_propagation_studies_fix_their_schedule(tmp_path):
    if "dtp" not in rules.names():
        pytest.skip("target propagation is not registered")
    url = f"sqlite:///{tmp_path / 't.db'}"
    study = run_study(StudySpec(rule="dtp-alternating", trials=1, epochs=1, storage=url), progress=False)
    assert study.study_name == "tune:digits:fc:dtp-alternating"
    assert (study.user_attrs["schedule"], study.user_attrs["label"]) == ("alternating", "dtp-alternating")
    (trial,) = study.get_trials()
    assert "schedule" not in trial.params and trial.user_attrs["config"]["schedule"] == "alternating"
    assert "alternation_period" in trial.params


@pytest.mark.slow
def test_random_and_tpe_searches_are_seeded(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    for sampler in ("random", "tpe"):
        runs = [run_study(StudySpec(rule="bp", trials=3, epochs=1, storage=url, study_name=f"{sampler}-{i}",
                                    sampler=sampler, seed=5, overrides={"batch_size": "256"}),
                                    progress=False) for i in range(2)]
        params = [[t.params for t in study.get_trials()] for study in runs]
        assert params[0] == params[1] and params[0][0] != params[0][1]


@pytest.mark.parametrize("population", [1, 5])
def test_best_after_pruner_keeps_only_the_best_so_far(tmp_path, population):
    """Per member in a population too: members report in trial order, each pruned or kept on its own."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = run_study(StudySpec(rule="bp", trials=5, epochs=2, storage=url, sampler="random", pruner="best-after:1",
                                overrides={"batch_size": "256"}, population=population), progress=False)
    trials = study.get_trials()
    assert trials[0].state == TrialState.COMPLETE
    for trial in trials:
        earlier = [t.intermediate_values[1] for t in trials[:trial.number]]
        mine = trial.intermediate_values[1]
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["end_reason"] == "pruned" and min(earlier) <= mine
            assert len(trial.user_attrs["curve"]["val"]) == 1
        else:
            assert all(mine < e for e in earlier)
    assert {len(t.user_attrs["population"]) for t in trials} == {population}
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}


@pytest.mark.slow
def test_dashboard_serves_the_storage_over_http(fa_study, free_port):
    url, _, _ = fa_study
    server = bioscale_process("dashboard", "--storage", url, "--port", str(free_port))
    try:
        assert dashboard_studies(server, free_port) == ["tune:digits:fc:fa"]
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_out_of_memory_ends_the_trial_with_its_reason_frees_the_trial_and_the_worker_goes_on(tmp_path, monkeypatch):
    import gc
    import weakref

    import torch

    from bioscale.study import _objective

    nets, freed = [], []
    catalogue_line(monkeypatch, "test-hungry")

    class Hungry(GradientRule):
        name = "test-hungry"  # its first run asks for more memory than there is

        def task_loss(self, x, y):
            if len(nets) == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return rules.cross_entropy(self.net(x), y)

        def __init__(self, net, **settings) -> None:
            super().__init__(net, **settings)
            if net.input_shape == (1, 8, 8):  # a trial's net (the driver also checks settings on a tiny one)
                nets.append(weakref.ref(net))

    def free_memory(device):
        gc.collect()
        freed.append([ref() is None for ref in nets])

    monkeypatch.setattr(_objective, "_free_memory", free_memory)
    try:
        study = run_study(StudySpec(rule="test-hungry", trials=3, epochs=1,
                                    storage=f"sqlite:///{tmp_path / 'm.db'}", devices="cpu",
                                    overrides={"batch_size": "256"}), progress=False)
    finally:
        _REGISTRY.pop("test-hungry", None)
    first, *rest = study.get_trials()
    assert first.state == TrialState.PRUNED
    assert first.user_attrs["end_reason"] == "out of memory on cpu: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert [t.state for t in rest] == [TrialState.COMPLETE] * 2 and len(nets) == 3
    assert freed == [[True]], "the trial's network was still referenced when its memory was given back"


def test_the_printed_reproduce_command_retrains_the_best_trial_exactly(fa_study, capsys):
    url, _, _ = fa_study
    code, out, _ = cli(capsys, "study", "best", "--storage", url)
    (line,) = [line for line in out.splitlines() if line.startswith("reproduce: ")]
    argv = shlex.split(line.removeprefix("reproduce: "))
    assert argv[:2] == ["bioscale", "train"] and "--seed" in argv
    assert main([*argv[1:], "--json", "--quiet"]) == 0
    rerun = json.loads(capsys.readouterr().out.splitlines()[-1])
    trial = load(url, "tune:digits:fc:fa").best_trial
    assert min(e["val_error"] for e in rerun["history"]) == trial.value
    assert [e["test_error"] for e in rerun["history"]] == trial.user_attrs["curve"]["test"]


def test_the_default_trial_trains_the_defaults_outside_the_budget(tmp_path):
    from bioscale.contract import best_trial, is_default_config

    url = f"sqlite:///{tmp_path / 'd.db'}"
    study = run_study(StudySpec(rule="dtp", trials=2, epochs=1, storage=url, devices="cpu", protocol="paper",
                                default_trial=True, sampler="random"), progress=False)
    trials = study.get_trials()
    defaults = [t for t in trials if is_default_config(t)]
    assert len(trials) == 3 and len(defaults) == 1 and defaults[0].number == 0
    settings = rules.settings("dtp")
    assert defaults[0].params == {k: settings[k] for k in defaults[0].params}
    assert best_trial(trials) is not None and not is_default_config(best_trial(trials))


def test_the_paper_protocol_samples_table_4_only_and_holds_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = run_study(StudySpec(rule="ao-sdtp-alternating", trials=1, epochs=1, storage=url, devices="cpu",
                                protocol="paper"), progress=False)
    attrs = study.user_attrs
    assert attrs["protocol"] == "paper"
    assert set(attrs["space"]) == {"forward_lr", "forward_beta2", "forward_eps", "inverse_lr", "inverse_beta2",
                                   "inverse_eps", "sigma"}
    assert attrs["fixed"] == {"activation": "tanh", "batch_size": 128, "alternation_period": 0, "aux_size": 512}
    (trial,) = study.get_trials()
    assert trial.user_attrs["config"]["alternation_period"] == 0 and trial.user_attrs["config"]["activation"] == "tanh"
    relu = run_study(StudySpec(rule="bp", trials=1, epochs=1, storage=url, devices="cpu", protocol="paper",
                               activation="relu"), progress=False)
    assert relu.study_name == "tune:digits:fc:bp:relu" and relu.user_attrs["fixed"]["activation"] == "relu"
    narrowed = run_study(StudySpec(rule="bp", trials=1, epochs=1, storage=url, devices="cpu", protocol="paper",
                                   overrides={"batch_size": "32,64"}, study_name="narrowed"), progress=False)
    assert narrowed.user_attrs["protocol"] == "custom" and "batch_size" in narrowed.user_attrs["space"]


def test_evaluate_reports_the_test_error_at_the_best_validation_epoch_and_at_the_last(tmp_path):
    from bioscale.train import train

    url = f"sqlite:///{tmp_path / 'e.db'}"
    run_study(StudySpec(rule="bp", trials=1, epochs=4, storage=url, devices="cpu", overrides={"forward_lr": "0.02",
                        "batch_size": "64"}), progress=False)
    evaluation = evaluate_study(url, "tune:digits:fc:bp", seeds=(3, 4), device="cpu", progress=False)
    training, settings = spaces.split_config("bp", evaluation["config"])
    for i, seed in enumerate((3, 4)):
        # Each seed alone, with the minibatch order the evaluation's population shared (the study's seed).
        result, _ = train(rule="bp", dataset="digits", arch=evaluation["config"]["arch"], epochs=4, seed=seed,
                          data_seed=evaluation["data_seed"], device="cpu", settings=settings, progress=False,
                          chance_patience=0, **training)
        best = min(result.history, key=lambda r: r.val_error)
        assert evaluation["best_val_epochs"][i] == best.epoch
        assert evaluation["test_errors_at_best_val"][i] == best.test_error
        assert evaluation["test_errors"][i] == result.history[-1].test_error
    assert evaluation["test_error_at_best_val_mean"] == pytest.approx(sum(evaluation["test_errors_at_best_val"]) / 2)
