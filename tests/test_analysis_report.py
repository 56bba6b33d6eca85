"""`analyze()` end to end on a synthetic storage shaped like docs/storage-contract.md; bad input; the paper table."""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
import subprocess

import matplotlib.image as mpimg
import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution

from bioscale.analysis import ARTIFACT_DIR_NAME, analyze, best_table, compare, published
from bioscale.analysis.artifacts import artifact_store, attach_figures
from bioscale.analysis.synthetic import add_study

EVALUATION = {"seeds": [0, 1, 2], "test_errors": [0.04, 0.05, 0.06], "train_errors": [0.0, 0.01, 0.0],
              "test_error_mean": 0.05, "test_error_std": 0.008, "epochs": 10, "config": {"forward_lr": 1e-3}}


def objective(relu_shift: float, seed: int):
    noise = np.random.default_rng(seed)

    def error(p):
        return (0.04 + 0.01 * (math.log10(p["forward_lr"]) + 3.0) ** 2 + 0.01 * noise.random()
                + (relu_shift if p["activation"] == "relu" else 0.0) + 0.02 * p.get("alpha", 0.0))
    return error


def alpha_for_tanh(p):
    return {"alpha": FloatDistribution(0.01, 0.2)} if p["activation"] == "tanh" else {}


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("storage") / "studies.db"
    url = f"sqlite:///{path}"
    add_study(url, objective(-0.03, 0), label="bp", n_trials=30, n_failed=2, curve_noise=0.1, evaluation=EVALUATION)
    add_study(url, objective(0.03, 1), label="dtp-alternating", rule="dtp", schedule="alternating", n_trials=30,
              conditional=alpha_for_tanh, curve_noise=0.1, seed=1)
    add_study(url, objective(0.0, 2), label="fa", n_trials=0, n_failed=2, seed=2)
    add_study(url, objective(0.0, 3), label="bp", n_trials=6, stage="architecture", seed=3)
    return url


@pytest.fixture(scope="module")
def report(storage_url, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    return analyze(storage_url, None, out, formats=("png", "pdf"), progress=False, figures="all")


@pytest.mark.slow
def test_analyze_writes_non_blank_png_and_pdf_figures(report):
    out = report.parent
    pngs = sorted((out / "figures").rglob("*.png"))
    names = {p.stem for p in pngs}
    for kind in ("importance", "activation", "sensitivity"):
        assert {f"bp-{kind}", f"dtp-alternating-{kind}"} <= names
    for kind in ("importance-heatmap", "error-ecdf", "training-curves", "robustness", "budget-trust"):
        assert f"digits-fc-{kind}" in names
    for png in pngs:
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.02, f"{png.name} looks blank"
        packed = (image[..., :3] * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
        assert len(np.unique(packed)) > 20, f"{png.name} has almost no colours"
        pdf = png.with_suffix(".pdf")
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:] and len(data) > 5_000
    if shutil.which("pdftoppm"):
        pdf = pngs[0].with_suffix(".pdf")
        subprocess.run(["pdftoppm", "-png", "-r", "40", "-singlefile", str(pdf), str(out / "rendered")], check=True)
        assert mpimg.imread(out / "rendered.png")[..., :3].std() > 0.02


def test_report_states_numbers_and_verdicts_per_rule(report):
    text = report.read_text()
    assert "### bp" in text and "### dtp-alternating" in text
    bp = text[text.index("### bp"):text.index("### dtp-alternating")]
    dtp = text[text.index("### dtp-alternating"):]
    assert "ReLU better" in bp and "tanh better" in dtp
    assert "fANOVA" in bp and "PED-ANOVA" in bp and "log10 scale for forward_lr, inverse_lr" in bp
    assert "Robustness" in bp and "Budget trust" in bp
    assert "ended early or failed: diverged 2" in bp and "did not complete: tanh" in bp or "did not complete: relu" in bp
    assert "On every finished trial (diverged at chance level 90%)" in bp  # the activation test on all finished trials
    assert "**Diverged or stalled**" in bp and "on every finished trial, diverged ones at chance level 90%" in bp
    assert "5.00 ± 0.80% " in bp or "5.00 ± 0.80%" in bp  # the evaluation attribute
    assert "Conditional parameters** alpha" in dtp and "branch with alpha" in dtp
    assert "`tune:digits:fc:fa`: 0 complete trials" in text
    assert "architecture:" not in text  # the default selection is stage == "tune"
    assert "No published counterpart" in text
    budget = next(line for line in text.splitlines() if line.startswith("**Budget**"))
    assert ("32 trials × 10 epochs per study, random sampler; best configuration re-evaluated over seeds 0, 1, 2 for "
            "10 epochs (1 study)") in budget  # bp: 30 complete + 2 diverged, with its evaluation
    assert "30 trials × 10 epochs per study, random sampler (1 study)" in budget  # dtp-alternating, not evaluated
    assert "60 configurations per rule" in budget and "500 epochs" in budget
    for column in ("best.csv", "paper_comparison.csv", "importance.csv", "activation.csv", "stability.csv"):
        assert (report.parent / column).is_file()


def test_html_report_links_every_figure_and_has_contents(report):
    html = report.with_suffix(".html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert sorted(images) == sorted(p.relative_to(report.parent).as_posix()
                                    for p in (report.parent / "figures").rglob("*.png"))
    assert all((report.parent / src).is_file() for src in images)  # linked, not embedded
    assert len(html) < 200_000 and "base64" not in html
    assert "ReLU better" in html and "<table>" in html
    anchors = re.findall(r'<a href="#([^"]+)"', html)
    assert "findings" in anchors and all(f'id="{a}"' in html for a in anchors)


def test_figures_are_attached_to_their_studies(storage_url, report):
    store_dir = report.parent / ARTIFACT_DIR_NAME
    assert str(store_dir.resolve()) in report.read_text()
    study = optuna.load_study(study_name="tune:digits:fc:bp", storage=storage_url)
    metas = optuna.artifacts.get_all_artifact_meta(study)
    names = {m.filename for m in metas}
    assert {"bp-importance.png", "bp-activation.png", "bp-curves.png"} <= names
    assert all(name.startswith("bp-") for name in names)  # its own figures, no copy of a family figure
    assert all((store_dir / m.artifact_id).is_file() for m in metas)
    assert not optuna.artifacts.get_all_artifact_meta(optuna.load_study(study_name="tune:digits:fc:fa", storage=storage_url))

    files = sorted((report.parent / "figures").rglob("bp-*.png"))
    attach_figures(study, files, artifact_store(report.parent))  # a rerun replaces, it does not pile up
    again = optuna.artifacts.get_all_artifact_meta(study)
    assert sorted(m.artifact_id for m in again) == sorted(m.artifact_id for m in metas)


def test_best_table(storage_url):
    table = best_table(storage_url, None)
    required = ["dataset", "arch", "label", "rule", "schedule", "trials_complete", "best_val_error",
                "test_error_at_best", "evaluated_test_mean", "evaluated_test_std"]
    assert set(required) <= set(table.columns)
    assert list(table.label) == ["bp", "dtp-alternating", "fa"]
    study = optuna.load_study(study_name="tune:digits:fc:bp", storage=storage_url)
    row = table.set_index("label").loc["bp"]
    assert row.trials_complete == 30 and row.best_val_error == pytest.approx(study.best_value)
    assert row.test_error_at_best == pytest.approx(study.best_trial.user_attrs["test_error"])
    assert row.evaluated_test_mean == pytest.approx(0.05) and row.evaluated_test_std == pytest.approx(0.008)
    assert table.set_index("label").loc["dtp-alternating"].schedule == "alternating"
    fa = table.set_index("label").loc["fa"]
    assert fa.trials_complete == 0 and math.isnan(fa.best_val_error)
    assert list(best_table(storage_url, ["architecture:*"]).study) == ["architecture:digits:fc:bp"]


def test_missing_sqlite_file_is_a_clear_error_and_is_not_created(tmp_path):
    path = tmp_path / "nope.db"
    with pytest.raises(ValueError, match="no such file") as error:
        analyze(f"sqlite:///{path}", None, tmp_path / "out", progress=False)
    assert "\n" not in str(error.value)
    assert not path.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("storage, message", [
    ("not/a/file.db", "not/a"),
    ("postgresql://nobody:secret@127.0.0.1:1/none", "cannot open storage"),
    ("sqlite://", "sqlite://"),
    ("journal:///no/such/file.log", "file.log"),
])
def test_unopenable_storages_raise_one_line_value_error(storage, message):
    with pytest.raises(ValueError, match=message) as error:
        best_table(storage, None)
    assert "\n" not in str(error.value) and "secret" not in str(error.value)


def test_journal_storages_are_read(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path / "studies.log"
    add_study(JournalStorage(JournalFileBackend(str(path))), lambda p: 0.1 + p["sigma"], label="fa", n_trials=4)
    for address in (str(path), f"journal:///{path}"):
        assert list(best_table(address, None).trials_complete) == [4]


def test_sqlite_file_without_studies_is_rejected_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="holds no Optuna studies"):
        best_table(f"sqlite:///{path}", None)
    assert path.read_bytes() == before


def test_patterns_matching_nothing_name_the_studies_there(storage_url, tmp_path):
    with pytest.raises(ValueError, match=r"no study .* matches tune:cifar10:\*.*tune:digits:fc:bp"):
        analyze(storage_url, ["tune:cifar10:*"], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="unknown figure format"):
        analyze(storage_url, None, tmp_path / "out", formats=("gif",), progress=False)


def test_empty_storage_and_storage_without_tune_studies(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(ValueError, match="holds no studies"):
        best_table(storage, None)
    add_study(storage, lambda p: 0.1, label="bp", n_trials=2, stage="architecture")
    with pytest.raises(ValueError, match="no study .* has stage 'tune'"):
        best_table(storage, None)


def test_published_tables_and_comparison():
    paper = published()
    assert len(paper) == 44 and set(paper.table) == {1, 2}
    assert paper.test_error.between(0, 1).all()
    bp = paper[(paper.dataset == "mnist") & (paper.family == "fc") & (paper.label == "bp")].iloc[0]
    assert bp.test_error == pytest.approx(0.0148)
    assert set(paper.label) >= {"dtp-parallel", "dtp-alternating", "sdtp-parallel", "ao-sdtp-alternating", "fa", "dfa", "bp"}

    storage = optuna.storages.InMemoryStorage()
    add_study(storage, lambda p: 0.02, label="bp", dataset="mnist", arch="5*fc:256", n_trials=3, evaluation=EVALUATION)
    add_study(storage, lambda p: 0.45, label="dtp-parallel", rule="dtp", schedule="parallel", dataset="cifar10",
              arch="lc", n_trials=3)
    table = compare(best_table(storage, None)).set_index("label")
    assert table.loc["bp"].family == "fc" and table.loc["bp"].ours_basis == "evaluated"
    assert table.loc["bp"]["diff"] == pytest.approx(0.05 - 0.0148)
    dtp = table.loc["dtp-parallel"]
    assert dtp.paper_test_error == pytest.approx(0.3947)
    assert dtp["diff"] == pytest.approx(dtp.test_error_at_best - 0.3947)
    assert isinstance(table, pd.DataFrame)
