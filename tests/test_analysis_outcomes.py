"""Every finished trial counts; tunability; evaluated seeds that diverged; the paper's protocol per row; one look per rule."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import IntDistribution

from bioscale.analysis import best_table, compare, compute
from bioscale.analysis.statistics.evaluation import AT_BEST_VAL, AT_LAST, evaluated
from bioscale.analysis.statistics.outcomes import chance_error, counted_error, outcome, outcomes, valued_trials
from bioscale import catalogue
from bioscale.analysis.palette import FREE_COLOURS, lighter, series_style

PAPER_RULES = ("bp", "fa", "dfa", "tp", "dtp", "sdtp", "ao-sdtp")
from bioscale.analysis.analyses.protocol import is_paper_protocol, protocol_verdict, search_space_problems
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study, contract_trial
from bioscale.analysis.statistics.tunability import tunability
from optuna.trial import TrialState

SPACE = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}


def lr_objective(p):
    return 0.05 + 0.02 * (math.log10(p["forward_lr"]) + 3.5) ** 2


def test_finished_trials_count_diverged_at_chance_and_pruned_at_what_they_reached():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lr_objective, label="fa", space=SPACE, n_trials=20, n_failed=5, n_pruned=3, default={"forward_lr": 1e-3})
    (record,) = select_studies(storage, None)
    counts = outcomes(record.trials)
    assert (counts.n_finished, counts.n_complete, counts.n_diverged, counts.n_pruned) == (28, 20, 5, 3)  # default left out
    assert counts.share_diverged == pytest.approx(5 / 28)
    assert counts.line().startswith("18% diverged or stalled (5 of 28 finished: 20 complete, 5 diverged, 3 stopped by")
    assert chance_error("digits") == pytest.approx(0.9) and chance_error("no such dataset") == pytest.approx(0.9)
    kinds = {outcome(t) for t in record.trials}
    assert kinds == {"complete", "diverged", "pruned"}
    pruned = next(t for t in record.trials if outcome(t) == "pruned")
    assert counted_error(pruned, 0.9) == pytest.approx(min(pruned.intermediate_values.values()))
    stalled = contract_trial({}, {}, 0.9, state=TrialState.PRUNED, end_reason="diverged: error stayed at chance")
    assert outcome(stalled) == "stalled" and counted_error(stalled, 0.8) == 0.8
    assert len(valued_trials(record.trials, 0.9)) == 28


def test_importances_and_the_activation_test_are_given_on_all_finished_trials_too():
    # ReLU diverges whenever sigma > 0.2 and is otherwise equal: among complete trials sigma explains little,
    # among every finished trial (diverged at chance level) it explains most of the variance.
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lr_objective, label="bp", n_trials=80,
              diverges=lambda p: p["activation"] == "relu" and p["sigma"] > 0.2)
    analysis = compute(storage, None, progress=False, seeds=1)
    (a,) = analysis.studies
    counts = analysis.statistic("outcomes", a.name)
    assert counts.n_diverged > 10
    shares = analysis.statistic("importance", a.name)
    assert shares.fanova.overall.mean["sigma"] < 0.1
    assert shares.fanova_all.overall.n_trials == 80 and shares.fanova_all.overall.ranked()[0][0] in ("sigma", "activation")
    within = analysis.statistic("activation", a.name)
    assert within.effect_all.verdict == "tanh better" and within.effect_all.median_diff < within.effect.median_diff
    assert within.effect.n_relu + counts.n_diverged == within.effect_all.n_relu
    assert "activation sampled as a hyperparameter within this study" in within.note
    assert "On every finished trial (diverged at chance level 90%): tanh better" in within.note


def test_tunability_is_the_default_error_against_the_tuned_best():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lr_objective, label="dfa", space=SPACE, n_trials=30, default={"forward_lr": 1e-5})
    (record,) = select_studies(storage, None)
    result = tunability(record.trials, 0.9)
    assert result.default_error == pytest.approx(lr_objective({"forward_lr": 1e-5}))  # 0.05 + 0.02 * 1.5² = 9.5 %
    assert result.tuned_error == pytest.approx(min(t.value for t in record.complete if t.number != result.default_trial))
    assert result.gain == pytest.approx(result.default_error - result.tuned_error) and result.gain > 0.03
    assert result.n_search == 30 and "tuning buys +" in result.line()
    analysis = compute(storage, None, progress=False, seeds=1)
    assert [g.gain for g in analysis.computed["tunability"].gains] == [pytest.approx(result.gain)]
    assert analysis.statistic("robustness", "dfa").n_finished == 30  # the default trial stays out of the search statistics
    assert len(analysis.studies[0].frame) == 30


def test_evaluation_uses_the_best_validation_epoch_and_names_diverged_seeds():
    both = evaluated({"seeds": [0, 1, 2], "test_errors": [0.3, 0.3], "test_errors_at_best_val": [0.1, 0.2],
                      "diverged": [{"seed": 2, "reason": "loss became nan"}]}, 0.9)
    assert both.basis == AT_BEST_VAL and both.mean == pytest.approx(0.15)
    assert both.mean_with_diverged == pytest.approx(0.4)
    assert "1 of 3 seeds diverged and are not in that mean: seed 2 (loss became nan)" in both.line()
    old = evaluated({"seeds": [0, 1], "test_errors": [0.1, 0.3], "test_error_mean": 0.2}, 0.9)
    assert old.basis == AT_LAST and old.mean == pytest.approx(0.2) and not old.diverged
    assert evaluated(None, 0.9) is None


def test_a_study_that_samples_activation_or_alternation_period_is_never_a_paper_protocol_row():
    storage = optuna.storages.InMemoryStorage()
    evaluation = {"seeds": [0, 1], "test_errors": [0.5, 0.5], "test_errors_at_best_val": [0.02, 0.04]}
    add_study(storage, lambda p: 0.02, label="bp", dataset="mnist", arch="fc", space=SPACE, n_trials=3,
              protocol="paper", fixed={"activation": "tanh"}, evaluation=evaluation)
    add_study(storage, lambda p: 0.02, label="fa", dataset="mnist", arch="fc", n_trials=3, protocol="paper")  # samples activation
    add_study(storage, lambda p: 0.4, label="dtp-alternating", rule="dtp", schedule="alternating", dataset="mnist",
              arch="fc", space={**SPACE, "alternation_period": IntDistribution(0, 5)}, n_trials=3, protocol="paper",
              fixed={"activation": "tanh"})
    add_study(storage, lambda p: 0.02, label="dfa", dataset="mnist", arch="fc", space=SPACE, n_trials=3,
              protocol="paper", fixed={"activation": "relu"}, suffix="relu")
    records = {r.label: r for r in select_studies(storage, None)}
    assert not search_space_problems(records["bp"].info)
    assert not is_paper_protocol(records["bp"])  # the paper's search, but at 3 × 10, not its 60 × 500
    assert protocol_verdict(records["bp"]) == "the paper's search space at 3 × 10 (the paper: 60 × 500)"
    assert all(search_space_problems(records[k].info) for k in ("fa", "dtp-alternating", "dfa"))
    assert protocol_verdict(records["fa"]).startswith("no: samples activation")
    table = compare(best_table(storage, None)).set_index("label")
    assert not table.loc["bp"].paper_protocol and "samples" not in table.loc["bp"].paper_note
    assert table.loc["bp"].protocol_verdict == protocol_verdict(records["bp"])
    assert table.loc["bp"].ours_test_error == pytest.approx(0.03) and table.loc["bp"].test_at == AT_BEST_VAL
    assert "NOT the paper's protocol: samples activation" in table.loc["fa"].paper_note
    assert "samples alternation_period" in table.loc["dtp-alternating"].paper_note
    assert "activation fixed to relu" in table.loc["dfa"].paper_note
    assert table.loc["bp"].fixed == "activation=tanh" and table.loc["bp"].sampler == "random"


def test_each_rule_keeps_one_colour_and_each_schedule_its_own_style():
    labels = ["bp", "fa", "dfa"] + [f"{r}-{s}" for r in ("tp", "dtp", "sdtp", "ao-sdtp") for s in ("alternating", "parallel")]
    styles = {label: series_style(label) for label in labels}
    assert len({s.color for s in styles.values()}) == len(PAPER_RULES)  # 11 series, 7 rules, 7 colours
    for rule in ("tp", "dtp", "sdtp", "ao-sdtp"):
        alternating, parallel = styles[f"{rule}-alternating"], styles[f"{rule}-parallel"]
        assert alternating.color == parallel.color and alternating.rule == rule
        assert alternating.linestyle != parallel.linestyle
    assert styles["ao-sdtp-alternating"].color != styles["tp-parallel"].color  # the old palette drew both in one blue
    assert series_style("tp-parallel").linestyle == series_style("dtp-parallel").linestyle
    assert series_style("newrule").color == series_style("newrule").color
    relu, tanh = series_style("bp", "relu"), series_style("bp", "tanh")
    assert tanh.color == styles["bp"].color and relu.color not in {s.color for s in styles.values()}
    assert relu.color == lighter(tanh.color) and relu.linestyle == tanh.linestyle
    own = {rule: series_style(rule).color for rule, facts in catalogue.RULES.items() if facts.colour}
    assert len(set(own.values())) == len(own) and not set(own.values()) & set(FREE_COLOURS)  # each its own colour
    assert series_style("sign-symmetry").color in FREE_COLOURS and series_style("newrule").color in FREE_COLOURS


def test_the_later_tp_rules_have_colours_of_their_own():
    paper = {series_style(rule).color for rule in PAPER_RULES}
    later = {rule: series_style(f"{rule}-parallel").color for rule in ("ddtp", "ldrl")}
    assert len(set(later.values())) == 2 and not set(later.values()) & paper
    assert all(series_style(f"{rule}-alternating").color == color for rule, color in later.items())


def test_strip_plot_jitter_is_the_same_every_time_and_leaves_the_global_generator_alone():
    import numpy as np
    import pandas as pd
    import seaborn as sns

    from bioscale.analysis import plots

    data = pd.DataFrame({"activation": ["tanh"] * 20 + ["relu"] * 20, "error": np.linspace(0, 1, 40)})
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    offsets = []
    for _ in range(2):
        with plots.styled():
            fig, axes = plots.new_figure(4, 3)
            sns.stripplot(data=data, x="activation", y="error", ax=axes[0, 0], jitter=0.25)
            offsets.append(np.concatenate([c.get_offsets() for c in axes[0, 0].collections]))
    assert np.array_equal(offsets[0], offsets[1]) and np.ptp(offsets[0][:20, 0]) > 0  # jittered, identically
    assert np.array_equal(np.random.get_state()[1], before)
