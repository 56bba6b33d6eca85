"""The scaling view on planted storages: a gap to BP that doubles from one task to the next "grows", a constant one "holds"."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bioscale.analysis import compute
from bioscale.analysis.analyses.scaling import verdict
from bioscale.analysis.synthetic import add_study

# Test errors at three evaluation seeds, per task: BP, FA (gap 2 pp on both tasks), DTP (gap 3 pp, then 6 pp).
PLANTED = {"mnist": {"bp": 0.015, "fa": 0.035, "dtp-parallel": 0.045},
           "fashion-mnist": {"bp": 0.10, "fa": 0.12, "dtp-parallel": 0.16}}


def evaluation(error: float) -> dict:
    errors = [error - 0.001, error, error + 0.001]
    return {"seeds": [0, 1, 2], "test_errors_at_best_val": errors, "test_errors": errors, "epochs": 10,
            "config": {"forward_lr": 1e-3}}


def plant(url: str, dataset: str) -> None:
    for label, error in PLANTED[dataset].items():
        rule = label.split("-")[0]
        add_study(url, lambda p, e=error: e, label=label, rule=rule, schedule="parallel" if rule == "dtp" else None,
                  dataset=dataset, n_trials=6, evaluation=evaluation(error), fixed={"activation": "tanh"},
                  protocol="paper")


@pytest.fixture(scope="module")
def storages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scaling")
    urls = [f"sqlite:///{folder / 'mnist.db'}", f"sqlite:///{folder / 'fashion.db'}"]
    plant(urls[0], "mnist")
    plant(urls[1], "fashion-mnist")
    return urls


@pytest.fixture(scope="module")
def scaling(storages):
    return compute(storages, progress=False, seeds=2).computed["scaling"]


def test_the_doubled_gap_grows_and_the_constant_gap_holds(scaling):
    said = dict(zip(scaling.verdicts.label, scaling.verdicts.verdict))
    assert said == {"fa": "holds", "dtp-parallel": "grows"}


def test_tasks_run_from_the_easiest_to_the_hardest_by_bp_error(scaling):
    assert scaling.tasks == [("mnist", "fc"), ("fashion-mnist", "fc")]
    row = scaling.table.set_index(["dataset", "label"]).loc[("mnist", "dtp-parallel")]
    assert row.gap_to_bp == pytest.approx(0.03)
    # seed spread (sd 0.1 pp over 3 seeds) and the binomial error on 10,000 test examples
    se = (0.001 ** 2 / 3 + 0.045 * 0.955 / 10_000) ** 0.5
    assert row.test_error_se == pytest.approx(se, rel=1e-6)


def test_the_paper_cells_and_the_rank_agreement_stand_beside_ours(scaling):
    mnist = scaling.table[scaling.table.dataset == "mnist"].set_index("label")
    assert mnist.loc["bp", "paper_test_error"] == pytest.approx(0.0148)
    assert mnist.loc["fa", "paper_test_error"] == pytest.approx(0.0185)
    assert pd.isna(scaling.table[scaling.table.dataset == "fashion-mnist"].paper_test_error).all()
    agreement = scaling.agreement.set_index("dataset").loc["mnist"]
    assert agreement.n_rules == 3  # bp, fa, dtp-parallel: ours 1.5 < 3.5 < 4.5, the paper's 1.48 < 1.85 < 2.86
    assert agreement.kendall_tau == pytest.approx(1.0)


def test_one_task_gives_no_scaling_view(storages):
    assert compute(storages[0], progress=False, seeds=2).computed["scaling"].tasks == []


@pytest.mark.parametrize("easy, hard, expected", [
    ((0.02, 0.002), (0.02, 0.002), "holds"), ((0.02, 0.002), (0.05, 0.002), "grows"),
    ((0.05, 0.002), (0.02, 0.002), "shrinks"), ((0.02, 0.02), (0.05, 0.02), "cannot tell")])
def test_verdict_reads_the_interval_of_the_change(easy, hard, expected):
    assert verdict(*easy, *hard)[0] == expected


@pytest.mark.slow
def test_analyze_reads_repeated_storages_and_opens_with_the_scaling_view(storages, tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "-m", "bioscale.cli", "analyze", "--storage", storages[0], "--storage", storages[1],
               "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = (out / "report.md").read_text()
    assert text.index("Scaling: each rule's gap to BP") < text.index("## Findings")
    assert "dtp-parallel grows" in text and "fa holds" in text
    assert (out / "figures" / "summary" / "scaling.png").stat().st_size > 0
    assert set(pd.read_csv(out / "scaling.csv").dataset) == {"mnist", "fashion-mnist"}


def test_a_study_held_by_two_storages_is_refused(storages, tmp_path):
    command = [sys.executable, "-m", "bioscale.cli", "analyze", "--storage", storages[0], "--storage", storages[0],
               "--out", str(tmp_path / "r"), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "is in both" in done.stderr and not (tmp_path / "r" / "report.md").exists()
