"""`compute()` returns every number as data and writes nothing; `render(compute(...))` writes what `analyze()` does."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
from optuna.distributions import FloatDistribution

from bioscale.analysis import Analysis, analyze, compute, render
from bioscale.analysis.statistics.activation import RELU_BETTER
from bioscale.analysis.synthetic import PAPER_SPACE, add_study

SEEDS = 2  # fANOVA forests per study: enough to check the numbers, quicker than the default


def _objective(p):
    return 0.04 + 0.01 * (math.log10(p["forward_lr"]) + 3.0) ** 2 - (0.03 if p["activation"] == "relu" else 0.0)


@pytest.fixture(scope="module")
def storage_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("storage")
    url = f"sqlite:///{folder / 'studies.db'}"
    noise = np.random.default_rng(0)
    add_study(url, lambda p: _objective(p) + 0.01 * noise.random(), label="bp", n_trials=30, n_failed=2,
              curve_noise=0.1)
    add_study(url, _objective, label="dtp-alternating", rule="dtp", schedule="alternating", n_trials=20, seed=1,
              conditional=lambda p: {"alpha": FloatDistribution(0.01, 0.2)} if p["activation"] == "tanh" else {})
    add_study(url, _objective, label="fa", n_trials=0, n_failed=2, seed=2)
    return folder


@pytest.fixture(scope="module")
def storage_url(storage_dir):
    return f"sqlite:///{storage_dir / 'studies.db'}"


@pytest.fixture(scope="module")
def analysis(storage_dir, storage_url, tmp_path_factory) -> Analysis:
    before = {p.name: p.read_bytes() for p in storage_dir.iterdir()}
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = compute(storage_url, None, progress=False, seeds=SEEDS)
    assert list(cwd.iterdir()) == []
    assert {p.name: p.read_bytes() for p in storage_dir.iterdir()} == before  # nothing written beside the storage
    return result


def test_compute_returns_importances_effects_and_stability_per_study(analysis):
    bp = analysis.study("tune:digits:fc:bp")
    assert bp is analysis.study("bp") and bp.analysed and bp.status == "ok"
    assert len(bp.frame) == 30 and {"value", "test_error", "forward_lr", "activation"} <= set(bp.frame.columns)
    shares = analysis.statistic("importance", "bp")
    assert shares.fanova.overall.ok and sum(shares.fanova.overall.mean.values()) == pytest.approx(1.0, abs=1e-6)
    assert shares.fanova.seeds == SEEDS
    assert shares.ped.ok and sum(shares.ped.importance.values()) == pytest.approx(1.0)
    assert shares.log_params == ["forward_lr", "inverse_lr"]
    assert shares.top_params and set(shares.top_params) <= set(PAPER_SPACE)
    within = analysis.statistic("activation", "bp")
    assert within.effect.verdict == RELU_BETTER and within.effect.n_tanh + within.effect.n_relu == 30
    assert sum(sum(c.values()) for c in within.incomplete.values()) == 2
    rob = analysis.statistic("robustness", "bp")
    assert (rob.n_finished, rob.n_complete) == (32, 30)
    assert 0 < rob.fraction_within <= 1 and set(rob.lr_bands) == {"forward_lr", "inverse_lr"}
    assert analysis.statistic("budget", "bp").verdict()

    dtp = analysis.study("dtp-alternating")
    dtp_fanova = analysis.statistic("importance", "dtp-alternating").fanova
    assert "alpha" in dtp_fanova.conditional and dtp_fanova.branches
    fa = analysis.study("fa")
    assert not fa.analysed and fa.status.startswith("0 complete trials")


def test_compute_returns_the_tables_across_studies(analysis):
    assert [r.name for r in analysis.records] == ["tune:digits:fc:bp", "tune:digits:fc:dtp-alternating",
                                                  "tune:digits:fc:fa"]
    assert list(analysis.groups) == [("digits", "fc")] and len(analysis.groups["digits", "fc"]) == 3
    assert list(analysis.best.label) == ["bp", "dtp-alternating", "fa"]
    assert len(analysis.computed["paper"].comparison) == 3
    importance = analysis.computed["importance"].long
    assert set(importance.study) == {"tune:digits:fc:bp", "tune:digits:fc:dtp-alternating"}
    assert set(importance.method) == {"fanova", "ped-anova"}
    assert list(analysis.computed["activation"].within.verdict)[0] == RELU_BETTER
    assert list(analysis.computed["robustness"].long.n_finished) == [32, 20]
    with pytest.raises(KeyError, match="no study 'nope'"):
        analysis.study("nope")


@pytest.mark.slow
def test_compute_draws_no_figure(storage_url, tmp_path):
    script = ("import sys\nfrom bioscale.analysis import compute\n"
              f"compute({storage_url!r}, ['tune:digits:fc:bp'], progress=False, seeds=1)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'seaborn')))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


def _normalised(text: str, out) -> str:
    return re.sub(r"Generated .*? UTC", "Generated", text.replace(str(out.resolve()), "OUT").replace(str(out), "OUT"))


@pytest.mark.slow
def test_render_of_compute_writes_what_analyze_writes(storage_url, analysis, tmp_path):
    rendered = render(analysis, tmp_path / "rendered", ("png",))
    analysed = analyze(storage_url, None, tmp_path / "analysed", ("png",), progress=False, seeds=SEEDS)
    assert rendered.name == analysed.name == "report.md"
    assert _normalised(rendered.read_text(), rendered.parent) == _normalised(analysed.read_text(), analysed.parent)
    for table in ("best.csv", "paper_comparison.csv", "importance.csv", "activation.csv", "stability.csv"):
        assert (rendered.parent / table).read_text() == (analysed.parent / table).read_text(), table
    figures = [sorted(p.relative_to(out) for p in (out / "figures").rglob("*")) for out in (rendered.parent, analysed.parent)]
    assert figures[0] == figures[1] and figures[0]
    assert "ReLU better" in rendered.read_text()
