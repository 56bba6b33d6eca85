"""scripts/mnist-result, the command that regenerates docs/results/mnist/, at its tiny budget on digits."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from bioscale.analysis.analyses.scaling import VERDICTS
from conftest import REPO

SCRIPT = REPO / "scripts" / "mnist-result"


def run(*words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *words], capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_tiny_run_writes_the_published_layout_opening_with_the_scaling_view(tmp_path):
    out = tmp_path / "mnist"
    done = run("--tiny", "--out", str(out), "--work", str(tmp_path / "work"), "--side-by-side", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("report.md", "report.html", "README.md", "scaling.csv", "scaling_verdicts.csv", "best.csv",
                 "paper_comparison.csv", "figures/summary/scaling.png", "figures/summary/ranking.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "artifacts").exists()
    report = (out / "report.md").read_text()
    for said in ("Command: `scripts/mnist-result --tiny", "Machine: ", "Wall time: ", "bioscale commit: ", "Budget: "):
        assert said in report and said in (out / "README.md").read_text()
    assert report.index("## Scaling") < report.index("## Findings")
    scaling = pd.read_csv(out / "scaling.csv")
    assert {("digits", "fc"), ("digits", "lc")} <= set(zip(scaling.dataset, scaling.arch))
    assert {"bp", "fa", "ep"} <= set(scaling.label)
    verdicts = pd.read_csv(out / "scaling_verdicts.csv")
    assert set(verdicts.verdict) <= set(VERDICTS) and "fa" in set(verdicts.label)
    # EP ran at its reduced budget (1 configuration) beside the others' 3
    best = pd.read_csv(out / "best.csv").set_index("study")
    assert best.loc["tune:digits:fc:ep", "trials_total"] == 1 and best.loc["tune:digits:fc:bp", "trials_total"] == 3


def test_a_bad_rule_is_refused_in_one_line_before_anything_is_written(tmp_path):
    done = run("--tiny", "--rules", "bp,nosuch", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nosuch" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_a_folder_of_other_files_is_not_replaced(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    done = run("--tiny", "--out", str(tmp_path), "--work", str(tmp_path / "work"))
    assert done.returncode == 2 and "not a result of this script" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_missing_dataset_files_are_refused_in_one_line_with_no_storage_left(tmp_path):
    done = run("--tiny", "--dataset", "mnist", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"),
               "--work", str(tmp_path / "work"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("mnist-result: error: cannot read mnist")
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
