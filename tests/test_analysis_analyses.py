"""The analysis modules: registry, evidence thresholds and the known answers of issue 24."""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest

from bioscale.analysis import analyze, compute, registry
from bioscale.analysis.statistics.activation import NO_CLEAR_DIFFERENCE, NOT_ENOUGH, TANH_BETTER
from bioscale.analysis.analyses import flags as flags_module
from bioscale.analysis.statistics.evidence import THRESHOLDS, evidence
from bioscale.analysis.statistics.pairs import PAIRED, compare_pair, find_pairs, paired_effect, pooled
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study

SPACE = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}


def objective(p):
    return 0.2 + 0.05 * (math.log10(p["forward_lr"]) + 3.0) ** 2 + 0.1 * p["sigma"]


def add_pair(storage, label="bp", n_trials=6, shift=0.01, seeds=(0, 0), **kwargs):
    for activation, extra, seed in (("tanh", 0.0, seeds[0]), ("relu", shift, seeds[1])):
        add_study(storage, lambda p, e=extra: objective(p) + e, label=label, fixed={"activation": activation},
                  suffix=activation, space=SPACE, n_trials=n_trials, seed=seed, protocol="paper", **kwargs)


def test_registry_finds_every_analysis_in_report_order_findings_first():
    modules = registry.analyses()
    names = [m.NAME for m in modules]
    assert names[:2] == ["scaling", "findings"]  # the scaling view (several tasks only) opens the findings
    assert {"activation", "importance", "robustness", "budget", "tunability", "paper", "outcomes", "flags", "ecdf",
            "curves", "glossary", "protocol", "studies"} <= set(names)
    assert [m.ORDER for m in modules] == sorted(m.ORDER for m in modules)
    for module in modules:
        assert callable(module.compute) and callable(module.render) and module.__doc__
        assert set(getattr(module, "NEEDS", ())) <= set(names)
    assert registry.get("flags") is flags_module


def test_evidence_marks_statistics_below_their_threshold():
    assert not evidence("importance", 6).ok and evidence("importance", 200).ok
    assert "exploratory" in evidence("importance", 6).mark() and "6 complete trials" in evidence("importance", 6).mark()
    assert evidence("importance", 200).mark() == ""
    assert set(THRESHOLDS) >= {"importance", "paired", "unpaired", "stability", "trust"}


def test_planted_pair_one_pp_better_under_tanh_is_found_by_the_paired_test_at_6_configurations():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage)  # same sampler seed: the two studies ran the same 6 configurations
    ((tanh, relu),) = find_pairs(select_studies(storage, None))
    pair = compare_pair(tanh, relu)
    assert pair.design == PAIRED and pair.paired.n == 6
    assert np.allclose(pair.paired.diffs, -0.01)
    assert pair.paired.verdict == TANH_BETTER and pair.verdict == TANH_BETTER
    assert pair.paired.tanh_wins == 6 and pair.paired.sign_p == pytest.approx(2 / 2 ** 6)
    assert pair.on_all.verdict in (NO_CLEAR_DIFFERENCE, TANH_BETTER)  # the unpaired test is not what finds it
    assert pair.on_all.verdict == NO_CLEAR_DIFFERENCE


def test_pairs_with_different_configurations_stay_unpaired():
    storage = optuna.storages.InMemoryStorage()
    add_pair(storage, seeds=(0, 1))
    pair = compare_pair(*find_pairs(select_studies(storage, None))[0])
    assert pair.paired.n == 0 and pair.design == "unpaired" and pair.verdict == pair.on_all.verdict


def test_paired_effect_and_pooled_estimate_against_direct_computation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(-0.02, 0.01, 12), rng.normal(0.0, 0.01, 8)
    e = paired_effect(a)
    from scipy import stats

    # the sign test's CI of the median: order statistics k and n - k + 1, P(Bin(12, 1/2) <= k - 1) <= 2.5%
    assert stats.binom.cdf(2, 12, 0.5) <= 0.025 < stats.binom.cdf(3, 12, 0.5)
    assert e.median == pytest.approx(np.median(a)) and e.ci == pytest.approx((np.sort(a)[2], np.sort(a)[9]))
    assert e.tanh_wins == int((a < 0).sum())
    assert e.sign_p == pytest.approx(stats.binomtest(e.tanh_wins, 12).pvalue)
    p = pooled([e, paired_effect(b)])
    assert p.n_configs == 20 and p.n_draws == 20 and p.mean == pytest.approx(np.concatenate([a, b]).mean())
    assert p.ci[0] < p.mean < p.ci[1]
    assert paired_effect(a[:1]).verdict == NOT_ENOUGH


@pytest.fixture(scope="module")
def small_and_large(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('s') / 's.db'}"
    add_study(url, objective, label="fa", n_trials=6, seed=3)
    add_study(url, objective, label="bp", n_trials=200, seed=4, flat=True)
    return url


def test_importance_of_6_trials_is_exploratory_and_of_200_is_not(small_and_large):
    analysis = compute(small_and_large, None, progress=False, seeds=1)
    rows = {r.name: r for rows in analysis.computed["importance"].groups.values() for r in rows}
    assert "exploratory" in rows["fa"].top() and re.search(r"\d+%", rows["fa"].top())
    assert "exploratory" not in rows["bp"].top() and re.search(r"\d+%", rows["bp"].top())


def test_report_marks_every_share_of_a_small_study(small_and_large, tmp_path):
    text = analyze(small_and_large, None, tmp_path, progress=False, seeds=1, figures="none").read_text()
    fa = text[text.index("### fa"):]
    fanova = next(line for line in fa.splitlines() if "**fANOVA**" in line)
    assert "%" in fanova and "exploratory" in fanova
    bp = text[text.index("### bp"):text.index("### fa")]
    assert "exploratory" not in next(line for line in bp.splitlines() if "**fANOVA**" in line)
    assert text.index("## Findings") < text.index("# Appendix") < text.index("## Studies, protocols and budgets")
    assert "## Training curves" not in text  # a section of figures only is left out with --figures none
    assert "Bartunov et al. 2018" in text and "## Glossary" in text
    assert not list(tmp_path.glob("figures/**/*.png"))  # --figures none


def test_curves_still_falling_are_flagged_not_converged_and_flat_ones_are_not():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, objective, label="bp", n_trials=6, seed=0)  # synthetic curves fall to the last epoch
    add_study(storage, objective, label="fa", n_trials=6, seed=0, flat=True)
    analysis = compute(storage, None, progress=False, seeds=1)
    flagged = {s.name: s for s in analysis.computed["flags"].studies}
    assert flagged["bp"].has(flags_module.NOT_CONVERGED)
    assert not flagged["fa"].has(flags_module.NOT_CONVERGED)
    assert flags_module.still_improving([0.5, 0.3, 0.2, 0.1], 0.01)
    assert not flags_module.still_improving([0.5, 0.1, 0.1, 0.1], 0.01)


def test_best_at_the_largest_value_drawn_is_flagged():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lambda p: 0.5 - 0.04 * math.log10(p["forward_lr"] / 1e-5), label="bp", n_trials=6, seed=0)
    analysis = compute(storage, None, progress=False, seeds=1)
    (study,) = analysis.computed["flags"].studies
    assert study.has(flags_module.AT_EDGE)
    assert "forward_lr" in dict(study.flags)[flags_module.AT_EDGE]


def test_stall_counts_say_detection_was_off_and_near_chance_runs_are_counted_either_way():
    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lambda p: 0.88 if p["sigma"] > 0.2 else 0.1, label="bp", n_trials=10, seed=0, chance_patience=0)
    analysis = compute(storage, None, progress=False, seeds=1)
    (o,) = analysis.computed["outcomes"].studies
    assert o.stall_detection == "off" and o.n_stalled == 0
    expected = sum(1 for t in analysis.studies[0].record.trials if t.value >= 0.85)
    assert o.near_chance == expected > 0


def test_report_numbers_do_not_depend_on_the_order_of_studies_in_storage(tmp_path):
    texts = []
    for order in ((0, 1, 2), (2, 0, 1)):
        url = f"sqlite:///{tmp_path / ('s%d.db' % order[0])}"
        specs = [dict(label="bp"), dict(label="fa"), dict(label="dfa")]
        for index in order:
            add_pair(url, n_trials=6, **specs[index])
        out = tmp_path / f"out{order[0]}"
        text = analyze(url, None, out, progress=False, seeds=1, figures="none").read_text()
        texts.append(re.sub(r"Generated .*? UTC|sqlite:///\S+|" + re.escape(str(out.resolve())), "", text))
    assert texts[0] == texts[1]


def test_unknown_figure_level_is_a_usage_error_before_any_work(small_and_large, tmp_path):
    from bioscale.errors import UsageError

    with pytest.raises(UsageError, match="--figures"):
        analyze(small_and_large, None, tmp_path / "out", progress=False, figures="some")
    assert not (tmp_path / "out").exists()


def test_best_table_keeps_trial_counts_and_rows_name_dataset_and_architecture(small_and_large, tmp_path):
    text = analyze(small_and_large, None, tmp_path, progress=False, seeds=1, figures="none").read_text()
    assert re.search(r"\| digits \| fc \| bp \| 200 of 200 \| \d+\.\d\d \|", text)
    assert re.search(r"\| digits \| fc \| fa \| 6 of 6 \| \d+\.\d\d \|", text)


PLUGIN = '''"""A plug-in analysis: a per-study statistic (the median complete error) beside another analysis's (the top fANOVA share)."""
from dataclasses import dataclass, field
from statistics import median

from bioscale.analysis.report import Bullets

NAME = "zz-median"
TITLE = "Median error"
ORDER = 65
NEEDS = ("importance",)


@dataclass
class Medians:
    by_study: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)


def compute(results):
    out = Medians()
    for a in results.studies:
        if a.analysed:
            out.by_study[a.record.name] = median(t.value for t in a.complete)
            shares = results.computed["importance"].by_study[a.record.name].fanova.overall
            out.top[a.record.name] = max(shares.mean, key=shares.mean.get)
    return out


def render(computed, out, figures):
    out.table(__import__("pandas").DataFrame({"study": list(computed.by_study), "median": list(computed.by_study.values())}),
              "median")
    return [Bullets([f"{s}: median {100 * m:.2f}%, top {computed.top[s]}" for s, m in computed.by_study.items()])]
'''


def test_a_per_study_statistic_is_added_by_one_module(small_and_large, tmp_path, monkeypatch):
    import importlib
    import statistics
    import sys

    package = importlib.import_module("bioscale.analysis.analyses")
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "zz_median.py").write_text(PLUGIN)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    try:
        assert "zz-median" in [m.NAME for m in registry.analyses()]
        analysis = compute(small_and_large, None, progress=False, seeds=1)
        bp = analysis.study("bp")
        expected = statistics.median(t.value for t in bp.record.complete)  # bp trains every configuration fully
        assert analysis.statistic("zz-median", "bp") == pytest.approx(expected)
        report = analyze(small_and_large, None, tmp_path / "out", progress=False, seeds=1, figures="none")
        text = report.read_text()
        assert "## Median error" in text and f"tune:digits:fc:bp: median {100 * expected:.2f}%, top " in text
        assert text.index("## What tuning buys") < text.index("## Median error") < text.index("## Best results")
        table = pd.read_csv(tmp_path / "out" / "median.csv")
        assert set(table.study) == {"tune:digits:fc:fa", "tune:digits:fc:bp"} and table.set_index("study").loc[bp.record.name, "median"] == pytest.approx(expected)
    finally:
        sys.modules.pop("bioscale.analysis.analyses.zz_median", None)
