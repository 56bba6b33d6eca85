"""The report's words and figures (issue 32, item 6): 'after' the paper unless budget and data match, the protocol
verdict, reduced budgets marked where their numbers appear, rules absent from an architecture explained, one column order
in every importance heat map, ECDFs as small multiples by family, and each study's attached figures its own."""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pytest

from bioscale.analysis import analyze, compute
from bioscale.analysis.analyses import ecdf
from bioscale.analysis.analyses.importance import column_order
from bioscale.analysis.analyses.protocol import (REDUCED_MARK, REDUCED_REASON, SETTLING_COST, is_paper_protocol,
                                        missing_rules, missing_text, protocol_verdict, reduced_budgets)
from bioscale.analysis.rendering import _relation
from bioscale.analysis.storage import select_studies
from bioscale.analysis.synthetic import PAPER_SPACE, add_study

SPACE = {k: v for k, v in PAPER_SPACE.items() if k != "activation"}


def objective(p):
    return 0.1 + 0.05 * (math.log10(p["forward_lr"]) + 3.0) ** 2 + 0.1 * p["sigma"]


def paper_study(storage, dataset="mnist", n_trials=60, epochs=500, label="bp", **kwargs):
    return add_study(storage, objective, label=label, dataset=dataset, space=SPACE, n_trials=n_trials, epochs=epochs,
                     protocol="paper", fixed={"activation": "tanh"}, **kwargs)


def test_only_the_papers_search_at_its_budget_on_its_data_is_a_reproduction():
    storage = optuna.storages.InMemoryStorage()
    paper_study(storage)
    (record,) = select_studies(storage, None)
    assert is_paper_protocol(record) and protocol_verdict(record) == "yes"
    assert _relation([record]) == ("reproducing", "")

    for dataset, n_trials, epochs, verdict in (
            ("mnist", 6, 10, "the paper's search space at 6 × 10 (the paper: 60 × 500)"),
            ("digits", 60, 500, "the paper's search space at 60 × 500 (the paper: 60 × 500); digits, not the paper's data"),
            ("imagenet32", 60, 500,
             "the paper's search space at 60 × 500 (the paper: 60 × 500); downsampled 32x32 ImageNet")):
        storage = optuna.storages.InMemoryStorage()
        paper_study(storage, dataset=dataset, n_trials=n_trials, epochs=epochs)
        (record,) = select_studies(storage, None)
        assert not is_paper_protocol(record)
        assert protocol_verdict(record).startswith(verdict)
        relation, differs = _relation([record])
        assert relation == "after" and differs.startswith(" Not a reproduction: ")

    storage = optuna.storages.InMemoryStorage()  # another space at the paper's budget: 'no', with the reason
    add_study(storage, objective, label="bp", dataset="mnist", space=SPACE, n_trials=60, epochs=500, protocol="paper",
              fixed={"activation": "relu"})
    (record,) = select_studies(storage, None)
    assert protocol_verdict(record) == "no: activation fixed to relu (the paper: tanh)"


def demo_like(storage):
    """bp and fa on fc and lc at 8 × 10; ep at 3 × 4 on fc only, as the demo runs it."""
    for arch in ("fc", "lc"):
        for seed, label in enumerate(("bp", "fa")):
            add_study(storage, lambda p, s=seed: objective(p) + 0.05 * s, label=label, arch=arch, space=SPACE,
                      n_trials=8, seed=seed, protocol="paper", evaluation={"seeds": [0, 1], "test_errors": [0.1, 0.12]})
    for activation, shift in (("tanh", 0.0), ("relu", 0.02)):  # a tanh/ReLU pair: the same draws
        add_study(storage, lambda p, s=shift: objective(p) + 0.3 + s, label="ep", arch="fc", space=SPACE, n_trials=3,
                  epochs=4, seed=5, protocol="paper", fixed={"activation": activation}, suffix=activation)
    add_study(storage, objective, label="dfa", arch="fc", space=SPACE, n_trials=4, seed=6, protocol="paper")


def test_reduced_budget_is_marked_with_its_reason_in_findings_ranking_and_tables_and_its_absence_explained(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    demo_like(storage)
    records = select_studies(storage, None)
    reduced = reduced_budgets(records)
    # dfa's 4 trials are a smaller budget, not the demo's reduction
    assert sorted(reduced) == ["tune:digits:fc:ep:relu", "tune:digits:fc:ep:tanh"]
    assert reduced["tune:digits:fc:ep:tanh"] == f"3 × 4 against 8 × 10: {REDUCED_REASON}"
    assert missing_rules(records) == {("digits", "lc"): ["dfa", "ep"]}
    assert missing_text(("digits", "lc"), ["dfa", "ep"]) == (f"digits / lc: ep not run on lc: the demo runs them on fc "
                                                            f"only ({SETTLING_COST}); dfa not run on lc (no study in "
                                                            "the storage)")

    text = analyze(storage, None, tmp_path, progress=False, seeds=1, figures="none").read_text()
    findings = text[text.index("## Findings"):text.index("## ", text.index("## Findings") + 3)]
    assert f"Worst: ep [relu] {REDUCED_MARK}" in findings
    assert (f"Reduced budget ({REDUCED_MARK}): ep [tanh] {REDUCED_MARK}, ep [relu] {REDUCED_MARK} at 3 × 4 against 8 × 10"
            in findings)
    rows = [line for line in text.splitlines() if line.startswith("| digits | fc | ep")]
    assert len(rows) >= 6 and all(re.match(rf"\| digits \| fc \| ep( \[\w+\])? {REDUCED_MARK} \|", line) for line in rows)
    assert any(line.startswith(f"| digits | fc | ep {REDUCED_MARK} | paired") for line in rows)  # the tanh-vs-ReLU table
    appendix = text[text.index("## Studies, protocols and budgets"):]
    assert f"`tune:digits:fc:ep:relu`, `tune:digits:fc:ep:tanh`: 3 × 4 against 8 × 10: {REDUCED_REASON}" in appendix
    assert "**Rules absent from an architecture**: digits / lc: ep not run on lc" in appendix
    assert f"dfa {REDUCED_MARK}" not in text
    assert "the paper's search space at 8 × 10 (the paper: 60 × 500); digits, not the paper's data" in appendix
    assert "after Bartunov et al. 2018" in text and "reproducing" not in text


def test_every_importance_heat_map_has_one_column_order_whatever_the_shares():
    storage = optuna.storages.InMemoryStorage()
    # fc: forward_lr explains most; lc: sigma does. Sorting by share would order the columns differently.
    add_study(storage, lambda p: 0.1 + 0.1 * (math.log10(p["forward_lr"]) + 3.0) ** 2, label="bp", arch="fc",
              space=SPACE, n_trials=30, seed=0)
    add_study(storage, lambda p: 0.1 + 0.8 * p["sigma"], label="bp", arch="lc", space=SPACE, n_trials=30, seed=1)
    importance = compute(storage, None, progress=False, seeds=1).computed["importance"]
    tops = {arch: max(rows[0].fanova, key=rows[0].fanova.get) for (_, arch), rows in importance.groups.items()}
    assert tops == {"fc": "forward_lr", "lc": "sigma"}  # the planted answer, so a share-sorted order would differ
    assert importance.columns == ["forward_lr", "inverse_lr", "forward_beta2", "forward_eps", "sigma"]
    assert column_order(["zeta", "activation", "sigma", "forward_lr"]) == ["forward_lr", "sigma", "activation", "zeta"]


def test_ecdf_panels_hold_one_family_each_and_split_a_large_family_by_schedule():
    labels = ["bp", "fa", "dfa"] + [f"{r}-{s}" for r in ("tp", "dtp", "sdtp", "ao-sdtp")
                                    for s in ("alternating", "parallel")]
    series = [ecdf.Series(label, label, act, np.array([0.1])) for label in labels for act in ("tanh", "relu")]
    panels = ecdf.panels(series)
    assert [title for title, _ in panels] == ["backprop", "feedback alignment", "target propagation, alternating",
                                              "target propagation, parallel"]
    assert panels[2][1] == ["tp-alternating", "dtp-alternating", "sdtp-alternating", "ao-sdtp-alternating"]
    assert all(len(found) <= ecdf.MAX_CURVES for _, found in panels)
    small = [s for s in series if not s.label.endswith("parallel") or s.label == "tp-parallel"]
    assert [title for title, _ in ecdf.panels(small)] == ["backprop", "feedback alignment", "target propagation"]


@pytest.mark.slow
def test_each_study_is_attached_only_its_own_figures(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    for seed, label in enumerate(("bp", "fa")):
        add_study(url, lambda p, s=seed: objective(p) + 0.05 * s, label=label, space=SPACE, n_trials=8, seed=seed)
    analyze(url, None, tmp_path / "out", progress=False, seeds=1, figures="all")
    for label in ("bp", "fa"):
        study = optuna.load_study(study_name=f"tune:digits:fc:{label}", storage=url)
        names = {m.filename for m in optuna.artifacts.get_all_artifact_meta(study)}
        assert f"{label}-curves.png" in names and f"{label}-importance.png" in names
        assert all(name.startswith(f"{label}-") for name in names), names
