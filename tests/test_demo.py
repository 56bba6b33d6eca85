"""The main job end to end at a reduced budget: every rule and schedule, evaluation, analysis, report."""

from __future__ import annotations

import math
import re
from dataclasses import replace
import shlex
import shutil
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import optuna
import pytest

from bioscale import rules
from bioscale.analysis import best_table

from bioscale.defaults import DEMO, DEMO_REDUCED
from bioscale.spec import StudySpec, campaign_studies
from bioscale.study.campaign import campaign_study_name
from bioscale.workflows import demo_campaign, demo_study, reduced_budget
from conftest import dashboard_studies

pytestmark = pytest.mark.slow

# The demo at its smallest: every rule and schedule on fc and lc, tanh only (the paired tanh/ReLU analysis has its
# own tests on planted studies), one worker (pytest-xdist already keeps both cores busy).
ACTIVATIONS = ("tanh",)
DEMO_ARGV = [sys.executable, "-m", "bioscale.cli", "demo", "--trials", "2", "--epochs", "1", "--seeds", "0",
             "--workers", "1", "--activations", ",".join(ACTIVATIONS)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(DEMO_ARGV + ["--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_demo_plans_every_rule_and_schedule_on_fc_and_lc():
    labels = {(s.arch, s.label) for s in campaign_studies(StudySpec(), ("fc", "lc"))}
    expected = set()
    for name in rules.names():
        schedules = ("alternating", "parallel") if rules.get(name).schedules else (None,)
        expected |= {(arch, rules.label(name, s)) for arch in ("fc", "lc") for s in schedules}
    assert labels == expected
    assert {"bp", "fa", "dfa", "tp-parallel", "dtp-alternating", "sdtp-parallel", "ao-sdtp-alternating",
            "ddtp-parallel", "ldrl-alternating"} <= {l for _, l in labels}
    paired = campaign_studies(StudySpec(), ("fc", "lc"), activations=("tanh", "relu"))
    assert len(paired) == 2 * len(labels) and {campaign_study_name(s).rsplit(":", 1)[1] for s in paired} == {"tanh", "relu"}


def demo_studies():
    """The studies the demo runs: every rule and schedule on fc and lc (the energy-based rules on fc only), once per activation."""
    return demo_campaign(activations=ACTIVATIONS).studies


def test_demo_keeps_the_energy_based_rules_to_fc_at_a_reduced_budget():
    studies = demo_campaign().studies
    everything = campaign_studies(StudySpec(dataset=DEMO["dataset"]), DEMO["archs"], activations=DEMO["activations"])
    reduced = [s for s in studies if s.rule in DEMO_REDUCED["rules"]]
    assert {(s.rule, s.arch, s.activation) for s in reduced} == {
        (rule, "fc", activation) for rule in DEMO_REDUCED["rules"] for activation in DEMO["activations"]}
    assert all((s.trials, s.epochs) == (DEMO_REDUCED["trials"], DEMO_REDUCED["epochs"]) for s in reduced)
    def key(s):
        return s.rule, s.schedule, s.arch, s.activation

    assert [key(s) for s in studies if s.rule not in DEMO_REDUCED["rules"]] == [
        key(s) for s in everything if s.rule not in DEMO_REDUCED["rules"]]
    assert all((s.trials, s.epochs) == (DEMO["trials"], DEMO["epochs"]) for s in studies if s.rule not in DEMO_REDUCED["rules"])
    assert reduced_budget(demo_campaign()) == "chl on fc, ep on fc: 12 trials x 4 epochs"
    small = replace(demo_study(), trials=2, epochs=2)  # a smaller budget than the reduction is kept as it is
    assert all((s.trials, s.epochs) == (2, 2) for s in demo_campaign(small).studies)


def test_demo_report_lists_every_rule_with_a_finite_best_error(demo):
    out, proc = demo
    report = (out / "report.md").read_text()
    table = best_table(f"sqlite:///{out / 'bioscale.db'}")
    assert len(table) == len(demo_studies())
    for study in demo_studies():
        name = campaign_study_name(study)
        row = table[table.study == name]
        assert len(row) == 1 and row.label.iloc[0] == study.label, name
        assert math.isfinite(row.best_val_error.iloc[0]), name
        # the activation is named when studies differ in it; a reduced budget (EP, CHL) is marked †
        shown = re.escape(study.label) + rf"(?: \[{study.activation}\])?(?: †)?"
        assert re.search(rf"\| digits \| {study.arch} \| {shown} \| \d+ of \d+ \| \d+\.\d\d \|", report), name
    # The terminal summary: the report's path, a table of best errors, the dashboard command.
    assert f"report: {(out / 'report.md').resolve()}" in proc.stdout
    assert "dtp-alternating" in proc.stdout and "dashboard --storage sqlite:///" in proc.stdout


def test_the_printed_dashboard_command_serves_every_demo_study(demo, free_port):
    out, proc = demo
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("dashboard: ")]
    command = shlex.split(line.removeprefix("dashboard: "))
    assert shutil.which(command[0]), f"{command[0]} cannot be run as printed"
    server = subprocess.Popen([*command, "--port", str(free_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        served = dashboard_studies(server, free_port)
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert sorted(served) == sorted(campaign_study_name(s) for s in demo_studies())


def test_demo_evaluates_every_best_configuration(demo):
    out, _ = demo
    storage = f"sqlite:///{out / 'bioscale.db'}"
    for summary in optuna.get_all_study_summaries(storage):
        evaluation = optuna.load_study(study_name=summary.study_name, storage=storage).user_attrs.get("evaluation")
        assert evaluation and evaluation["seeds"] == [0], summary.study_name
        assert all(0 <= e <= 1 for e in evaluation["test_errors"])


def test_analyze_on_the_digits_studies_writes_non_blank_key_figures_and_pdfs_only_on_request(demo):
    out, _ = demo
    pngs = sorted((out / "figures").rglob("*.png"))
    pdfs = sorted((out / "figures").rglob("*.pdf"))
    key = {"ranking.png"} | {f"digits-{arch}-{kind}.png" for arch in DEMO["archs"] for kind in ("error-ecdf", "training-curves")}
    assert key <= {png.name for png in pngs} and not pdfs  # the key figures (one activation: no pair figure); PDFs on request
    for png in pngs:
        pixels = (mpimg.imread(png)[..., :3] * 255).astype(np.int64)
        assert pixels.std() > 5, f"{png.name} looks blank"
        colours = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
        assert len(colours) > 20, f"{png.name} has almost no content"
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and len(data) > 5000, pdf.name
    html = (out / "report.html").read_text()
    assert "base64" not in html and all((out / src).is_file() for src in re.findall(r'<img [^>]*src="([^"]+)"', html))


def test_rerunning_the_demo_resumes_instead_of_starting_over(demo):
    out, _ = demo
    storage = f"sqlite:///{out / 'bioscale.db'}"
    before = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    proc = subprocess.run(DEMO_ARGV + ["--out", str(out), "--rules", "bp,fa"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert after == before  # no new trials, no new studies
