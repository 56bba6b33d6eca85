"""Ablation paths, local parameter importance and interactions on planted studies whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bioscale import contract
from bioscale.analysis.statistics import ablation, interactions, local_importance
from bioscale.analysis.statistics.outcomes import chance_error
from bioscale.analysis.storage import read_storage, select_studies
from bioscale.analysis.statistics.surrogate import MIN_TRIALS_FIT, fit_surrogate
from bioscale.analysis.synthetic import add_study

SPACE = {f"x{i}": FloatDistribution(0.0, 1.0) for i in (1, 2, 3)}
DEFAULT = {"x1": 0.9, "x2": 1.0, "x3": 0.1}
CHANCE = chance_error("digits")


def planted(p, rng):
    """f = 10 (x1 − 0.3)² + 0.1 x2 + noise, x3 irrelevant; scaled into an error in [0.05, 0.15]."""
    return 0.05 + 0.02 * (10 * (p["x1"] - 0.3) ** 2 + 0.1 * p["x2"] + rng.normal(0, 0.02))


def study_record(tmp_path, objective, *, n_trials=150, default=DEFAULT, space=SPACE, **kwargs):
    """One planted study in a real journal-file storage, read back as the analysis reads it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = str(tmp_path / "planted.log")
    add_study(JournalStorage(JournalFileBackend(log)), objective, label="bp", space=space, n_trials=n_trials,
              default=default, **kwargs)
    (record,) = select_studies(read_storage(f"journal:///{log}"), None)
    return record


@pytest.fixture(scope="module")
def planted_study(tmp_path_factory):
    rng = np.random.default_rng(1)
    record = study_record(tmp_path_factory.mktemp("planted"), lambda p: planted(p, rng))
    return record, fit_surrogate(record.trials, CHANCE)


def test_the_path_takes_x1_then_x2_and_x3_last(planted_study):
    record, fit = planted_study
    path = ablation.compute(record.trials, fit, record.rule, CHANCE)
    assert path.status == "ok" and [s.param for s in path.steps] == ["x1", "x2", "x3"]
    assert path.source.startswith("the default-configuration trial")
    assert path.steps[0].default == pytest.approx(0.9) and path.steps[0].gain > 10 * max(s.gain for s in path.steps[1:])
    assert path.most()[0] == ["x1"] and path.most()[1] > 0.8
    # Each step's prediction is the surrogate's at the configuration reached: rebuild it step by step.
    config = dict(DEFAULT)
    for step in path.steps:
        config[step.param] = path.best[step.param]
        mean, spread = fit.surrogate.predict(fit.surrogate.encode(config))
        assert step.error == pytest.approx(mean[0]) and step.spread == pytest.approx(spread[0])
    best = min((t for t in record.trials if not contract.is_default_config(t)), key=lambda t: t.value)
    assert path.best == best.params and path.best_error == pytest.approx(best.value)
    default_trial = next(t for t in record.trials if contract.is_default_config(t))
    assert path.default_error == pytest.approx(default_trial.value)
    assert "x1 buys" in path.line() and "tuning buys" in path.line()
    # The improvement's spread pairs each tree's prediction at the default with its own at the lowest step.
    lowest = min(range(len(path.steps)), key=lambda k: path.steps[k].error)
    reached = dict(DEFAULT, **{s.param: path.best[s.param] for s in path.steps[:lowest + 1]})
    trees = [[tree.predict(fit.surrogate.encode(c)[None, :])[0] for c in (DEFAULT, reached)]
             for tree in fit.surrogate.forest.estimators_]
    assert path.improvement_spread == pytest.approx(np.std([a - b for a, b in trees]))
    assert path.improvement > 10 * path.improvement_spread


def test_local_importance_gives_x1_most_of_the_local_variance(planted_study):
    record, fit = planted_study
    lpi = local_importance.compute(record.trials, fit)
    assert lpi.status == "ok" and lpi.ranked()[0][0] == "x1"
    assert lpi.share["x1"] > 0.8 and sum(lpi.share.values()) == pytest.approx(1.0)
    # Analytic local shares of f along each line (others fixed): Var 10(x1 − 0.3)² and Var 0.1·x2 for x ~ U(0, 1).
    u4, u2 = (0.7 ** 5 + 0.3 ** 5) / 5, (0.7 ** 3 + 0.3 ** 3) / 3
    var_x1, var_x2 = 100 * (u4 - u2 ** 2), 0.1 ** 2 / 12
    assert lpi.share["x1"] == pytest.approx(var_x1 / (var_x1 + var_x2), abs=0.01)
    assert all(0 <= s < 0.2 for s in lpi.spread.values())
    # Independent check on the mean forest: x1's line varies far more than x3's around the best.
    center = fit.surrogate.encode(lpi.best)
    lines = {}
    for i, name in enumerate(fit.surrogate.params):
        rows = np.repeat(center[None, :], 25, axis=0)
        rows[:, i] = np.linspace(0, 1, 25)
        lines[name] = fit.surrogate.forest.predict(rows).var()
    assert lines["x1"] / sum(lines.values()) > 0.8


def test_a_planted_interaction_comes_out_as_the_strongest_pair(tmp_path):
    rng = np.random.default_rng(2)
    space = {**SPACE, "x4": FloatDistribution(0.0, 1.0)}

    def objective(p):  # the best x1 moves with x2; x3 matters on its own, x4 not at all
        return 0.05 + 0.1 * (p["x1"] - p["x2"]) ** 2 + 0.03 * p["x3"] + rng.normal(0, 0.001)

    record = study_record(tmp_path, objective, space=space, n_trials=600, default=None)
    fit = fit_surrogate(record.trials, CHANCE)
    result = interactions.compute(record.trials, fit)
    assert result.status == "ok"
    top = result.strongest
    assert {top.first, top.second} == {"x1", "x2"}
    assert top.share > 5 * result.pairs[1].share
    # Independent answer: on U(0,1)², (x1 − x2)² has variance 7/180, of which the pure x1·x2 term −2(x1−½)(x2−½)
    # carries 1/36; 0.03·x3 adds 0.03²/12. The forest's estimate approaches it as the trials grow (64 ± 6 % at 1,500).
    analytic = 0.1 ** 2 / 36 / (0.1 ** 2 * 7 / 180 + 0.03 ** 2 / 12)
    assert abs(top.share - analytic) < 0.15, (top.share, analytic)
    assert result.dependence.shape == (interactions.GRID, interactions.GRID)
    # The partial dependence's optimum of x1 moves with x2: its argmin row rises along the grid.
    rows = result.dependence.argmin(axis=0) if top.first == "x1" else result.dependence.argmin(axis=1)
    assert rows[-1] > rows[0]


def test_the_additive_study_has_no_strong_interaction(planted_study):
    record, fit = planted_study
    result = interactions.compute(record.trials, fit)
    assert result.strongest.share < interactions.NEGLIGIBLE and result.line().startswith("no pair interacts")


def test_a_default_that_is_already_the_best_gives_an_empty_path_that_says_so(tmp_path):
    rng = np.random.default_rng(3)
    record = study_record(tmp_path, lambda p: planted(p, rng), n_trials=60, default={"x1": 0.3, "x2": 0.0, "x3": 0.5})
    path = ablation.compute(record.trials, fit_surrogate(record.trials, CHANCE), record.rule, CHANCE)
    assert path.status == "empty" and path.steps == [] and path.computed
    assert "already the best" in path.line() and "empty" in path.line()


def test_too_few_trials_are_marked_exploratory_or_not_computed(tmp_path):
    rng = np.random.default_rng(4)
    record = study_record(tmp_path, lambda p: planted(p, rng), n_trials=12)
    fit = fit_surrogate(record.trials, CHANCE)
    assert fit.ok and fit.surrogate.n_trials == 12
    path = ablation.compute(record.trials, fit, record.rule, CHANCE)
    lpi = local_importance.compute(record.trials, fit)
    pairs = interactions.compute(record.trials, fit)
    assert path.status == lpi.status == pairs.status == "exploratory"
    for text in (path.line(), lpi.line(), pairs.line()):
        assert text.startswith("*exploratory* (12 finished trials")
    few = fit_surrogate(record.trials[:MIN_TRIALS_FIT - 1], CHANCE)
    assert not few.ok and f"at least {MIN_TRIALS_FIT}" in few.status
    for result in (ablation.compute(record.trials, few, record.rule, CHANCE), local_importance.compute(record.trials, few),
                   interactions.compute(record.trials, few)):
        assert not result.computed and "not computed" in result.line()


def test_diverged_trials_are_training_points_at_chance_level(tmp_path):
    rng = np.random.default_rng(5)
    record = study_record(tmp_path, lambda p: planted(p, rng), n_trials=40, n_failed=6)
    fit = fit_surrogate(record.trials, CHANCE)
    assert fit.surrogate.n_trials == 46 and fit.surrogate.n_diverged == 6
    assert np.sum(fit.surrogate.y == CHANCE) == 6


def test_log_and_categorical_parameters_are_encoded_as_the_importances_encode_them(tmp_path):
    rng = np.random.default_rng(6)
    space = {"forward_lr": FloatDistribution(1e-5, 1e-2, log=True), "activation": CategoricalDistribution(["tanh", "relu"]),
             "sigma": FloatDistribution(0.0, 1.0)}

    def objective(p):
        return 0.1 + 0.05 * abs(math.log10(p["forward_lr"]) + 3.5) + 0.03 * (p["activation"] == "relu") \
            + rng.normal(0, 0.001)

    record = study_record(tmp_path, objective, space=space, n_trials=120,
                          default={"forward_lr": 1e-2, "activation": "relu", "sigma": 0.5})
    fit = fit_surrogate(record.trials, CHANCE)
    s = fit.surrogate
    assert s.log_params == ["forward_lr"] and s.bounds("forward_lr") == pytest.approx((-5, -2))
    assert s.encode({"forward_lr": 1e-3, "activation": "relu", "sigma": 0.2}).tolist() == pytest.approx([1.0, -3.0, 0.2])
    path = ablation.compute(record.trials, fit, record.rule, CHANCE)
    assert [st.param for st in path.steps][:2] == ["forward_lr", "activation"]
    assert path.steps[0].default == pytest.approx(1e-2) and path.steps[1].default == "relu"
    lpi = local_importance.compute(record.trials, fit)
    assert lpi.ranked()[0][0] == "forward_lr" and lpi.curves["activation"].categorical


def test_figures_are_written(planted_study, tmp_path):
    record, fit = planted_study
    from bioscale.analysis.analyses.surrogate import ablation_figure, interaction_figure, local_importance_figure
    from bioscale.analysis.plots import save

    figures = [ablation_figure(ablation.compute(record.trials, fit, record.rule, CHANCE), "planted"),
               local_importance_figure(local_importance.compute(record.trials, fit), "planted"),
               interaction_figure(interactions.compute(record.trials, fit), "planted")]
    written = [save(f, tmp_path / f"figure-{i}", ("png",))["png"] for i, f in enumerate(figures)]
    assert all(p.stat().st_size > 10_000 for p in written)


def test_a_surrogate_that_cannot_predict_unseen_trials_marks_its_results_exploratory(tmp_path, planted_study):
    _, fit = planted_study
    assert fit.surrogate.oob_r2 > 0.9  # the planted study is predictable
    rng = np.random.default_rng(7)
    record = study_record(tmp_path, lambda p: 0.1 + rng.normal(0, 0.02), n_trials=60, n_failed=6)
    noise = fit_surrogate(record.trials, CHANCE)
    assert noise.surrogate.oob_r2 < 0.5
    for result in (ablation.compute(record.trials, noise, record.rule, CHANCE), local_importance.compute(record.trials, noise),
                   interactions.compute(record.trials, noise)):
        assert result.status == "exploratory" and "out-of-bag R²" in result.line()


def test_without_a_default_trial_the_path_starts_at_the_rules_defaults(tmp_path):
    rng = np.random.default_rng(8)
    space = {"forward_lr": FloatDistribution(1e-5, 1e-2, log=True), "forward_beta2": CategoricalDistribution([0.99, 0.999]),
             "sigma": FloatDistribution(0.0, 1.0)}  # bp has no sigma: it stays at its best value

    def objective(p):
        return 0.05 + 0.04 * (math.log10(p["forward_lr"]) + 4.5) ** 2 + rng.normal(0, 0.001)

    record = study_record(tmp_path, objective, space=space, n_trials=80, default=None)
    path = ablation.compute(record.trials, fit_surrogate(record.trials, CHANCE), "bp", CHANCE)
    assert path.source.startswith("bp's default settings") and math.isnan(path.default_error)
    assert path.default["forward_lr"] == pytest.approx(1e-3) and path.steps[0].param == "forward_lr"
    assert "sigma has no default" in path.line() and "tuning buys" not in path.line()
    assert "sigma" not in [s.param for s in path.steps]


@pytest.mark.slow
def test_analyze_writes_the_three_figures_the_table_and_the_report_lines(tmp_path):
    from bioscale.analysis import analyze

    rng = np.random.default_rng(9)
    record = study_record(tmp_path, lambda p: planted(p, rng), n_trials=60)
    report = analyze(f"journal:///{tmp_path / 'planted.log'}", None, tmp_path / "out", ("png",), progress=False,
                     seeds=1, figures="all")
    text = report.read_text()
    for line in ("## Which changes buy the gain", "the ablation paths say which one or two changes buy most of it: bp",
                 "path: x1", "(Fawcett and Hoos 2016)", "| strongest pair |"):
        assert line in text
    assert "within the trees' spread" not in text  # the planted x1 effect is far outside the forest's noise
    figures = tmp_path / "out" / "figures" / "digits-fc"
    assert {"bp-ablation.png", "bp-local-importance.png", "bp-interaction.png"} <= {p.name for p in figures.iterdir()}
    table = __import__("pandas").read_csv(tmp_path / "out" / "ablation.csv")
    assert set(table.analysis) == {"ablation", "local importance", "interaction"} and set(table.study) == {record.name}
    assert list(table[table.analysis == "ablation"].param) == ["(default)", "x1", "x2", "x3"]


def test_the_report_section_says_why_small_studies_have_no_surrogate_in_one_line_and_draws_nothing(tmp_path):
    from bioscale.analysis import analyze

    log = str(tmp_path / "small.log")
    storage = JournalStorage(JournalFileBackend(log))
    rng = np.random.default_rng(3)
    for label in ("bp", "fa", "dfa"):
        add_study(storage, lambda p: planted(p, rng), label=label, space=SPACE, n_trials=6, default=DEFAULT)
    out = tmp_path / "out"
    text = analyze(f"journal:///{log}", None, out, progress=False, seeds=1, figures="all").read_text()
    section = text[text.index("## Which changes buy the gain"):]
    section = section[:section.index("\n## ", 4)]
    lines = [line for line in section.splitlines() if line.strip()]
    assert len(lines) == 3, section  # heading, the tie to tunability, one line naming every study without a surrogate
    assert f"fewer than {MIN_TRIALS_FIT} finished trials" in lines[2] and all(f"{n} (6)" in lines[2] for n in ("bp", "fa", "dfa"))
    assert not any("ablation" in p.name for p in (out / "figures").rglob("*.png"))
    table = __import__("pandas").read_csv(out / "ablation.csv")
    assert len(table) == 0 and {"study", "analysis", "param", "value", "spread", "gain"} <= set(table.columns)
