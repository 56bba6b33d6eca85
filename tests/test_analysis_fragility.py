"""Issue 32's statistics with known answers: intervals that follow the design, one test per verdict with Holm's
correction, sensitivity that does not reward failure, the incumbent named, and the fidelity each statistic reads."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from bioscale import contract
from bioscale.analysis import compute
from bioscale.analysis.statistics.activation import NO_CLEAR_DIFFERENCE, TANH_BETTER
from bioscale.analysis.analyses.findings import sensitivity
from bioscale.analysis.statistics.design import design, draw_clusters, fidelity_line, fidelity_trials, first_rung_errors
from bioscale.analysis.statistics.evaluation import evaluated
from bioscale.analysis.statistics.evidence import learned, learned_threshold
from bioscale.analysis.statistics.pairs import PAIRED, compare_pairs, find_pairs, holm, pooled
from bioscale.analysis.statistics.stability import rung_trust
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_halving_study, add_study

SPACE = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}


def objective(p):
    return 0.2 + 0.05 * (math.log10(p["forward_lr"]) + 3.0) ** 2


def effect(p):
    """tanh − ReLU of one configuration: set by its learning rate, so rules that share draws share effects."""
    return -0.02 + 0.04 * (math.log10(p["forward_lr"]) + 3.5)


def add_pair(storage, label, seed, relu=None, n_trials=30, draws=None):
    for activation, fn in (("tanh", objective), ("relu", relu or (lambda p: objective(p) - effect(p)))):
        study = add_study(storage, fn, label=label, fixed={"activation": activation}, suffix=activation, space=SPACE,
                          n_trials=n_trials, seed=seed, protocol="extended")
        if draws is not None:
            study.set_user_attr(contract.DESIGN, {"sampler": "random", "seed": seed, "draws": draws, "shared": "rules",
                                                  "fidelity": None})


def pooled_of(storage):
    pairs = compare_pairs(find_pairs(select_studies(storage, None)))
    return pooled([p.paired for p in pairs], [p.label for p in pairs])


RULES = ("fa", "dfa", "kp", "wm")


@pytest.mark.parametrize("declared", [True, False])
def test_rules_that_share_draws_widen_the_pooled_interval_as_the_design_says(declared):
    shared, independent = optuna.storages.InMemoryStorage(), optuna.storages.InMemoryStorage()
    for i, rule in enumerate(RULES):  # one sampler seed for every rule, or one each
        add_pair(shared, rule, seed=7, draws="campaign:7" if declared else None)
        add_pair(independent, rule, seed=100 + i, draws=f"{rule}:{100 + i}" if declared else None)
    a, b = pooled_of(shared), pooled_of(independent)
    assert a.n_configs == b.n_configs == 120
    assert a.n_draws == 30 and b.n_draws == 120  # shared configurations are one draw, resampled together
    width = lambda p: p.ci[1] - p.ci[0]
    # the per-rule effects are equal where the draws are (effect depends on the configuration only): with K rules on
    # one set of n draws the mean varies like a mean over n, not K·n, so the interval is about √K = 2 times wider
    assert 1.5 < width(a) / width(b) < 2.7
    assert a.ci[0] < a.mean < a.ci[1] and "cluster bootstrap over 30 draws" in a.line()
    assert "4 rule × architecture pairs (4 rules)" in a.line()


def test_draws_are_inferred_from_the_configurations_when_no_design_is_recorded():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, "fa", seed=7)
    add_pair(storage, "dfa", seed=7)
    records = select_studies(storage, None)
    assert all(design(r).draws is None for r in records)
    clusters = draw_clusters(records)
    by_study = {}
    for (study, number), label in clusters.items():
        by_study.setdefault(study, []).append(label)
    assert len({tuple(v) for v in by_study.values()}) == 1  # one set of 30 draws across the four studies


def test_holm_adjusts_as_the_step_down_rule_says():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan]).tolist()[0] == 0.5 and math.isnan(holm([0.5, math.nan])[1])


def test_each_verdict_is_its_printed_test_after_holm_and_a_raw_p_below_5_percent_can_lose_it():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, "fa", seed=3, relu=lambda p: objective(p) + 0.02, n_trials=30)  # tanh better in 30 of 30
    add_pair(storage, "kp", seed=5, relu=objective, n_trials=12)  # no effect: every difference 0
    sigmas = sorted(t.params["sigma"] for t in optuna.load_study(study_name="tune:digits:fc:fa:tanh",
                                                                 storage=storage).trials)
    study = add_study(storage, objective, label="dfa", fixed={"activation": "tanh"}, suffix="tanh", space=SPACE,
                      n_trials=12, seed=9)
    cut = sorted(t.params["sigma"] for t in study.trials)[-2]  # tanh better in 10 of 12: sign test p = 0.039
    add_study(storage, lambda p: objective(p) + (-0.01 if p["sigma"] >= cut else 0.01), label="dfa",
              fixed={"activation": "relu"}, suffix="relu", space=SPACE, n_trials=12, seed=9)
    assert sigmas  # the fa study exists
    pairs = {p.label: p for p in compare_pairs(find_pairs(select_studies(storage, None)))}
    dfa = pairs["dfa"].paired
    assert (dfa.tanh_wins, dfa.relu_wins) == (10, 2) and dfa.sign_p == pytest.approx(2 * 79 / 4096)
    assert dfa.p_adjusted == pytest.approx(2 * dfa.sign_p)  # second smallest of three: times 2
    assert pairs["dfa"].verdict == NO_CLEAR_DIFFERENCE and pairs["fa"].verdict == TANH_BETTER
    for p in pairs.values():
        e = p.paired
        assert p.design == PAIRED and p.test == "sign test" and e.n_tests == 3
        assert (p.verdict == TANH_BETTER) == (e.p_adjusted < 0.05 and e.tanh_wins > e.relu_wins)
        assert f"sign test p = {e.sign_p:.3g}, Holm-adjusted over 3 pairs p = {e.p_adjusted:.3g}" in e.line()
        assert e.line().startswith(p.verdict)


def test_an_evaluated_error_carries_seed_spread_and_the_test_sets_size():
    ev = evaluated({"seeds": [0, 1, 2], "test_errors": [0.05, 0.06, 0.07]}, 0.9, "digits")
    assert ev.n_test == 359  # 1797 digits, a fifth held out: one example is 0.28 pp
    se = math.sqrt(np.var([0.05, 0.06, 0.07], ddof=1) / 3 + 0.06 * 0.94 / 359)
    assert ev.interval == pytest.approx((0.06 - 1.959964 * se, 0.06 + 1.959964 * se))
    one = evaluated({"seeds": [0], "test_errors": [0.1]}, 0.9, "digits")
    assert one.interval[1] - one.interval[0] == pytest.approx(2 * 1.959964 * math.sqrt(0.09 / 359))
    assert "95% CI" in ev.line() and "359 test examples" in ev.line()


def test_learned_means_every_seed_well_below_chance_with_a_margin_that_scales_with_classes():
    assert learned_threshold(0.9) == pytest.approx(0.45) and learned_threshold(0.5) == pytest.approx(0.25)
    assert not learned([0.772, 0.905], 0.9)  # tp-parallel [relu] fc of the issue: one seed worse than chance
    assert learned([0.03, 0.05], 0.9) and not learned([0.03, 0.5], 0.9) and not learned([], 0.9)


@pytest.fixture(scope="module")
def planted():
    url = optuna.storages.InMemoryStorage()  # the SQLite path is covered below; writing 100 trials to it costs ~20 s here
    narrow = lambda p: 0.02 + 0.30 * (math.log10(p["forward_lr"]) + 3.5) ** 2  # few configurations near the best
    add_study(url, lambda p: 0.02 + 0.02 * abs(math.log10(p["forward_lr"]) + 3.5), label="bp", n_trials=24, seed=1,
              space=SPACE)
    add_study(url, narrow, label="fa", n_trials=24, seed=2, space=SPACE)
    # never learns: every configuration at 84-85 %, so all of them lie within 5 pp of its own best
    add_study(url, lambda p: 0.84 + 0.01 * p["sigma"], label="tp", n_trials=24, seed=3, space=SPACE)
    # the rule's default settings beat every configuration the search drew
    add_study(url, lambda p: 0.01 if p.get("forward_lr") == 1e-3 and p.get("sigma") == 0.1 else narrow(p) + 0.05,
              label="dfa", n_trials=24, seed=4, space=SPACE, default={"forward_lr": 1e-3, "sigma": 0.1,
                                                                      "forward_beta2": 0.999, "forward_eps": 1e-8})
    return compute(url, None, progress=False, seeds=1)


def test_a_rule_that_never_learned_is_not_least_sensitive(planted):
    items = planted.computed["findings"].items
    line = next(i for i in items if "sensitivity" in i)
    assert "not ranked (never learned): tp" in line
    assert "tp (" not in line.split("not ranked")[0]  # neither most nor least sensitive
    assert "least sensitive bp (" in line and "of 24, 95% CI" in line
    best = next(i for i in items if ", best**" in i)
    assert "3 of 4 studies learned" in best and "not tp" in best
    assert not planted.study("tp").learned and planted.study("bp").learned
    claims = planted.computed["robustness"].claims[("digits", "fc")]  # tp's failure is not the paper's 'TP rules most sensitive'
    assert any(line.startswith("TP rules most sensitive: cannot tell") for line in claims)


def test_equal_shares_stay_a_tie():
    from bioscale.analysis.analyses.findings import Ranked

    rows = [Ranked(n, n, None, 0.1, 0.1, 0.1, 0, "best validation", 0.25, 24) for n in ("bp", "fa")]
    assert "a tie: all 2 at 25%" in sensitivity(("digits", "fc"), rows, [])


def test_a_default_that_beats_the_search_is_the_incumbent_and_named(planted):
    a = planted.study("dfa")
    default = contract.default_trial(a.record.trials)
    assert contract.best_trial(a.record.trials).number == default.number
    tuned = planted.statistic("tunability", "dfa")
    assert tuned.default_is_best and tuned.gain < 0  # tuning still compares the search's best
    row = planted.best.set_index("label").loc["dfa"]
    assert row["best_trial"] == default.number and bool(row["best_is_default"]) and row["best_val_error"] <= 0.0101
    text = " ".join(planted.computed["findings"].items)
    assert f"dfa at 1.00% (best validation error at the full budget, trial {default.number}, the default configuration" \
        in text


def test_halving_studies_read_the_first_rung_and_say_how_well_it_ranks_the_full_budget():
    storage = optuna.storages.InMemoryStorage()
    add_halving_study(storage, lambda p: 0.3 + 0.2 * p["sigma"], lambda p: 0.05 + 0.1 * p["sigma"], label="bp", seed=1)
    add_halving_study(storage, lambda p: 0.3 + 0.2 * p["sigma"], lambda p: 0.05 + 0.1 * (0.41 - p["sigma"]),
                      label="fa", seed=2)
    records = {r.label: r for r in select_studies(storage, None)}
    bp = records["bp"]
    assert design(bp).first_rung == 1 and design(bp).rungs == (1, 3, 9)
    finished, errors = first_rung_errors(bp, 0.9)
    assert len(finished) == 90 and np.allclose(errors, [0.3 + 0.2 * t.params["sigma"] for t in finished])
    trained, _ = fidelity_trials(bp, 0.9)
    assert len(trained) == 90 and all(t.value == pytest.approx(0.3 + 0.2 * t.params["sigma"]) for t in trained)
    analysis = compute(storage, None, progress=False, seeds=1)
    good, bad = analysis.computed["budget"].rungs["bp"], analysis.computed["budget"].rungs["fa"]
    assert good.n == bad.n == 10 and good.rho == pytest.approx(1.0) and bad.rho == pytest.approx(-1.0)
    assert good.high and good.line().startswith("budget trust high") and "n = 10" in good.line()
    assert not bad.high and "budget trust LOW" in bad.line()
    assert analysis.computed["budget"].low == ["fa"]
    assert analysis.statistic("robustness", "bp").n_finished == 90  # sensitivity over every configuration, at the first rung
    counts = analysis.statistic("outcomes", "bp")
    assert (counts.n_halved, counts.n_complete, counts.n_pruned) == (80, 10, 0)  # halving is by design, not a pruner
    assert "first rung (1 epoch)" in fidelity_line(analysis.study("bp").record)
    design_line = next(c for c in analysis.computed["findings"].caveats if c.startswith("Design:"))
    assert design_line.startswith("Design: 2 studies: random draws shared by pair, halving with η = 3, rungs of 1, 3, 9 "
                                  "epochs (2 distinct draw sets). Sensitivity, importances and tanh − ReLU read the first "
                                  "rung (1 epoch), which every configuration reached")


def test_rung_trust_needs_enough_configurations():
    few = rung_trust([0.1, 0.2], [0.1, 0.2], 1, 9)
    assert math.isnan(few.rho) and not few.high and not few.low and "not measurable" in few.line()


def test_an_evaluation_of_another_trial_than_the_incumbent_is_said(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    add_study(url, lambda p: 0.01 if p.get("sigma") == 0.1 else 0.2, label="bp", n_trials=6, seed=1, space=SPACE,
              default={"forward_lr": 1e-3, "sigma": 0.1, "forward_beta2": 0.999, "forward_eps": 1e-8},
              evaluation={"seeds": [0, 1], "test_errors": [0.2, 0.22], "trial": 3})
    analysis = compute(url, None, progress=False, seeds=1)
    best = next(i for i in analysis.computed["findings"].items if ", best**" in i)
    assert "bp at 21.00% (evaluated error at the full budget, trial 3 re-evaluated, while the study's best is trial 6, " \
           "the default configuration" in best
    assert "95% CI" in best
