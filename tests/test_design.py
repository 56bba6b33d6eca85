"""The search design: each study its own draws (a tanh/ReLU pair shared, every rule with --shared-draws), successive
halving inside a population, the default counted as the incumbent, and bad design input refused in one line."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from bioscale import contract
from bioscale.cli import main
from bioscale.spec import CampaignSpec, StudySpec, campaign_studies
from bioscale.study import best_of, run_study
from bioscale.study._design import Design, SuccessiveHalving, population_halving, rungs
from bioscale.study.campaign import campaign_study_name


def search_params(url: str, name: str) -> list[dict]:
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    return [t.params for t in sorted(contract.search_trials(trials), key=lambda t: t.number)]


def tune(specs, url: str) -> dict[tuple[str, str | None], list[dict]]:
    """Run each study of a campaign (one epoch, a population each) and return its search trials' parameters."""
    drawn = {}
    for spec in specs:
        run_study(replace(spec, storage=url, devices="cpu"), progress=False)
        drawn[spec.rule, spec.activation] = search_params(url, campaign_study_name(spec))
    return drawn


TEMPLATE = StudySpec(dataset="digits", trials=4, epochs=1, sampler="sobol", protocol="paper", population=5, chance_patience=0)


def test_each_rule_draws_its_own_configurations_and_a_tanh_relu_pair_shares_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'draws.db'}"
    drawn = tune(campaign_studies(TEMPLATE, ("fc",), ["bp", "fa"], ("tanh", "relu")), url)
    assert drawn["bp", "tanh"] == drawn["bp", "relu"] and drawn["fa", "tanh"] == drawn["fa", "relu"]
    assert len(drawn["bp", "tanh"]) == 4 and len({tuple(p.items()) for p in drawn["bp", "tanh"]}) == 4
    # bp and fa sample the same names (the forward Adam settings) but not the same values
    assert {p["forward_lr"] for p in drawn["bp", "tanh"]}.isdisjoint({p["forward_lr"] for p in drawn["fa", "tanh"]})


def test_shared_draws_give_every_rule_the_same_configurations(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    drawn = tune(campaign_studies(replace(TEMPLATE, shared_draws=True), ("fc",), ["bp", "fa"], ("tanh",)), url)
    assert drawn["bp", "tanh"] == drawn["fa", "tanh"] and len(drawn["bp", "tanh"]) == 4
    design = contract.StudyInfo.from_attrs(optuna.load_study(study_name="tune:digits:fc:fa:tanh", storage=url).user_attrs).design
    assert design["shared"] == "rules" and design["sampler"] == "sobol" and design["fidelity"] is None
    assert "fa" not in design["draws"] and design["seed"] == Design.of(replace(TEMPLATE, rule="bp", activation="relu",
                                                                               shared_draws=True).checked()).seed


def test_the_draw_key_pairs_activations_and_names_the_rule_and_seed():
    specs = {(s.rule, s.activation): s.checked() for s in campaign_studies(replace(TEMPLATE, sampler="random"), ("fc",),
                                                                         ["bp", "dtp"], ("tanh", "relu"))}
    designs = {key: Design.of(s) for key, s in specs.items()}
    assert designs["bp", "tanh"].draws == "tune:digits:fc:bp|seed=0" and designs["bp", "tanh"].shared == "pair"
    assert designs["bp", "tanh"].seed == designs["bp", "relu"].seed != designs["dtp", "tanh"].seed
    assert Design.of(replace(specs["bp", "tanh"], seed=1)).seed != designs["bp", "tanh"].seed
    assert Design.of(replace(specs["bp", "tanh"], study_name="mine")).seed == designs["bp", "tanh"].seed
    assert Design.of(replace(specs["bp", "tanh"], activation=None)).shared == "none"


def test_rungs_follow_the_halving_factor():
    assert rungs(10, 3) == [1, 3, 10] and rungs(9, 3) == [1, 3, 9] and rungs(30, 3) == [1, 3, 10, 30]
    assert rungs(4, 3) == [1, 4] and rungs(1, 3) == [1] and rungs(8, 2) == [1, 2, 4, 8]
    design = Design.of(replace(TEMPLATE, rule="bp", epochs=10, pruner="hyperband", population=10).checked())
    assert design.to_attr()["fidelity"] == {"scheme": "hyperband", "eta": 3, "rungs": [1, 3, 10]}
    assert [design.halving(b).rungs for b in range(4)] == [[1, 3, 10], [3, 10], [10], [1, 3, 10]]
    spec = replace(TEMPLATE, rule="bp", epochs=10, pruner="hyperband", population=10).checked()
    first = population_halving(spec, list(range(10)), [True] + [False] * 9)  # the default and 9 configurations
    second = population_halving(spec, list(range(10, 20)), [False] * 10)
    assert (first.rungs, first.exempt, second.rungs, second.exempt) == ([1, 3, 10], {0}, [3, 10], set())
    assert population_halving(replace(spec, pruner="none"), list(range(10)), [False] * 10) is None


def test_successive_halving_keeps_the_best_third_and_never_stops_the_default():
    halving = SuccessiveHalving([1, 3, 9], eta=3, exempt=frozenset({0}))
    errors = {0: 0.99, **{m: 0.1 * m for m in range(1, 10)}}  # the default (member 0) is the worst and still goes on
    assert halving(2, errors) == []  # not a rung
    assert sorted(halving(1, errors)) == [4, 5, 6, 7, 8, 9]
    assert sorted(halving(3, {0: 0.99, 1: 0.3, 2: 0.2, 3: 0.1})) == [1, 2]
    assert halving(9, {0: 0.5, 3: 0.1}) == []  # the last rung is the full budget
    assert halving.stopped == {**{m: 1 for m in range(4, 10)}, 1: 3, 2: 3}


def test_a_halving_study_trains_as_many_trials_at_each_rung_as_designed(tmp_path):
    url = f"sqlite:///{tmp_path / 'halving.db'}"
    study = run_study(replace(TEMPLATE, rule="bp", trials=9, epochs=9, pruner="halving", population=10, default_trial=True,
                              storage=url, devices="cpu"), progress=False)
    trials = study.get_trials()
    default = contract.default_trial(trials)
    assert len(default.user_attrs["curve"]["val"]) == 9 and default.state == TrialState.COMPLETE
    search = contract.search_trials(trials)
    reached = sorted(len(t.user_attrs["curve"]["val"]) for t in search)
    assert reached == [1] * 6 + [3] * 2 + [9]  # 9 configurations for 1 epoch, the best 3 for 3, the best 1 for 9
    for t in search:
        epochs = len(t.user_attrs["curve"]["val"])
        assert t.value == min(t.user_attrs["curve"]["val"])  # a halved trial's value: its best error so far
        if epochs < 9:
            assert t.state == TrialState.PRUNED and contract.read_end_reason(t.user_attrs["end_reason"]) == contract.HALVED
            assert t.user_attrs["end_reason"] == f"halved: stopped by successive halving at epoch {epochs}"
    at_first_rung = sorted(search, key=lambda t: (t.user_attrs["curve"]["val"][0], t.number))
    assert {t.number for t in at_first_rung[:3]} == {t.number for t in search if len(t.user_attrs["curve"]["val"]) >= 3}
    info = contract.StudyInfo.from_attrs(study.user_attrs)
    assert info.design["fidelity"] == {"scheme": "halving", "eta": 3, "rungs": [1, 3, 9]}
    best = contract.best_trial(trials)
    assert best.state == TrialState.COMPLETE and best.value <= default.value
    assert best_of(study)["trial"] == best.number and best_of(study)["role"] == contract.incumbent_role(best)


def test_a_planted_study_whose_default_is_best_reports_the_default_as_its_incumbent(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'planted.db'}", study_name="planted")
    dist = {"forward_lr": FloatDistribution(1e-5, 1e-1, log=True)}
    for lr, value, attrs in ((1e-3, 0.05, {contract.ROLE: contract.DEFAULT_CONFIG}), (1e-2, 0.2, {}), (1e-4, 0.3, {})):
        study.add_trial(create_trial(params={"forward_lr": lr}, distributions=dist, value=value, user_attrs=attrs))
    study.add_trial(create_trial(params={"forward_lr": 3e-3}, distributions=dist, state=TrialState.PRUNED,
                                 user_attrs={contract.END_REASON: contract.HALVED.text("stopped by successive halving at epoch 1")}))
    trials = study.get_trials()
    best = contract.best_trial(trials)
    assert best.number == 0 and contract.incumbent_role(best) == "default"
    assert contract.best_trial(trials, search_only=True).number == 1


def test_a_default_outside_a_set_range_trains_as_the_rules_default_and_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'outside.db'}"
    study = run_study(replace(TEMPLATE, rule="bp", trials=2, population=3, default_trial=True, storage=url, devices="cpu",
                              overrides={"forward_lr": "0.01:0.1"}), progress=False)
    default = contract.default_trial(study.get_trials())
    assert default is not None and default.state == TrialState.COMPLETE
    assert default.params["forward_lr"] < 0.01 and default.user_attrs[contract.OUTSIDE_SPACE] == ["forward_lr"]
    assert all(0.01 <= t.params["forward_lr"] <= 0.1 for t in contract.search_trials(study.get_trials()))
    assert "outside the searched range" in capsys.readouterr().err


def refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_design_input_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys):
    db = tmp_path / "bad.db"
    study = ["study", "run", "--rule", "bp", "--dataset", "digits", "--storage", f"sqlite:///{db}", "--quiet"]
    assert "unknown sampler 'grid'" in refused([*study, "--sampler", "grid"], capsys)
    assert "at least 2" in refused([*study, "--pruner", "halving:1", "--population", "4"], capsys)
    assert "--population of at least 3" in refused([*study, "--pruner", "halving"], capsys)
    assert "leaves out the rule's default forward_beta2" in refused(
        [*study, "--protocol", "paper", "--default-trial", "--set", "forward_beta2=0.95,0.99", "--population", "4"], capsys)
    campaign = ["campaign", "--dataset", "digits", "--arch", "fc", "--storage", f"sqlite:///{db}", "--quiet"]
    assert "two or more rules" in refused([*campaign, "--rules", "bp", "--shared-draws"], capsys)
    assert "unknown pruner 'halving-ish'" in refused([*campaign, "--pruner", "halving-ish"], capsys)
    out = tmp_path / "demo"
    assert "at least 2" in refused(["demo", "--out", str(out), "--pruner", "hyperband:1", "--quiet"], capsys)
    assert "two or more rules" in refused(["demo", "--out", str(out), "--rules", "bp", "--shared-draws", "--quiet"], capsys)
    assert not db.exists() and not out.exists()


def test_shared_draws_across_two_rules_pass_the_campaign_check():
    studies = campaign_studies(replace(TEMPLATE, shared_draws=True), ("fc",), ["bp", "fa"])
    assert len(CampaignSpec(studies=studies).checked().studies) == 2
    with pytest.raises(Exception, match="two or more rules"):
        CampaignSpec(studies=studies[:1]).checked()


def test_the_demo_halves_at_least_24_sobol_configurations_per_study_and_the_paper_campaign_keeps_random_search():
    from bioscale.defaults import DEMO_REDUCED
    from bioscale.workflows import campaign_spec, demo_campaign

    for spec in demo_campaign().studies:
        assert spec.trials >= (12 if spec.rule in DEMO_REDUCED["rules"] else 24), spec.label
        assert spec.sampler == "sobol" and spec.pruner == "halving" and spec.population >= spec.trials + 1
    paper = campaign_spec("mnist", "fc").studies[0]
    design = Design.of(paper.checked())
    assert (design.sampler, design.scheme) == ("random", None) and design.words() == "random draws; every trial the full budget"
