"""`bioscale export`: the CSV reads back as the storage holds it; the DeepCAVE layout follows the converter's grammar."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from bioscale import contract
from bioscale.analysis.export import METRIC, deepcave_frames, export_csv, export_deepcave, read_records
from bioscale.analysis.statistics.outcomes import chance_error
from bioscale.analysis.synthetic import PAPER_SPACE, add_study
from bioscale.cli import main

SPACE = {"forward_lr": PAPER_SPACE["forward_lr"], "sigma": PAPER_SPACE["sigma"], "activation": PAPER_SPACE["activation"],
         "batch_size": CategoricalDistribution([32, 64, 128, 256]), "forward_eps": PAPER_SPACE["forward_eps"],
         "symmetric": CategoricalDistribution((True, False))}  # a True/False choice, as EP's in the extended protocol
DEFAULT = {"forward_lr": 1e-4, "sigma": 0.1, "activation": "tanh", "batch_size": 128, "forward_eps": 1e-8, "symmetric": True}
EPOCHS = 6

# DeepCAVE's DataFrame converter, as its documentation describes trials.csv and configspace.csv (written here from the
# docs: a metric column is `metric:NAME [LOWER; UPPER] (minimize|maximize)`; status is a DeepCAVE Status name).
METRIC_GRAMMAR = re.compile(r"^metric:(\w+) \[(-?\d+(?:\.\d*)?|[-+]inf); (-?\d+(?:\.\d*)?|[-+]inf)\] \((minimize|maximize)\)$")
STATUSES = {"SUCCESS", "TIMEOUT", "MEMORYOUT", "CRASHED", "ABORTED", "NOT_EVALUATED"}
TYPES = {"float", "integer", "categorical"}


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A real SQLite storage: two studies, with complete, diverged, pruned, failed and default-configuration trials."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    study = add_study(url, lambda p: 0.1 + 0.05 * p["sigma"] + rng.normal(0, 0.01), label="dtp-parallel", rule="dtp",
                      schedule="parallel", space=SPACE, n_trials=12, n_failed=2, n_pruned=1, epochs=EPOCHS,
                      default=DEFAULT)
    study.add_trial(create_trial(state=TrialState.FAIL, params={**DEFAULT, "sigma": 0.2},
                                 distributions=SPACE, user_attrs={contract.END_REASON: "error: RuntimeError: boom"}))
    add_study(url, lambda p: 0.2, label="bp", space={"forward_lr": SPACE["forward_lr"]}, n_trials=3, epochs=EPOCHS,
              seed=1, stage="architecture")
    return url


def test_the_csv_reads_back_with_the_same_trials_values_params_and_curves(storage, tmp_path):
    path, n = export_csv(storage, None, tmp_path / "trials.csv")
    frame = pd.read_csv(path)
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert set(frame.study) == set(studies) and n == len(frame)
    for name in studies:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        rows = frame[frame.study == name].set_index("trial")
        assert sorted(rows.index) == [t.number for t in trials]
        for t in trials:
            row = rows.loc[t.number]
            assert row.state == t.state.name
            if t.value is None:
                assert math.isnan(row.value)
            else:
                assert row.value == pytest.approx(t.value, rel=1e-12)
            for key, value in t.params.items():
                got = row[f"params_{key}"]
                assert got == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), (key, got, value)
            curve = t.user_attrs.get(contract.CURVE)
            if curve:
                assert json.loads(row.curve_val) == pytest.approx(curve["val"], rel=1e-12)
                assert row.best_epoch == t.user_attrs[contract.BEST_EPOCH]
            assert row.role == ("default" if contract.is_default_config(t) else "search")
    dtp = frame[frame.study.str.contains("dtp")]
    assert set(dtp.outcome) == {"complete", "diverged", "pruned", "failed"}
    assert (dtp.loc[dtp.outcome == "diverged", "counted_error"] == chance_error("digits")).all()
    assert set(dtp.rule) == {"dtp"} and set(dtp.schedule) == {"parallel"} and set(dtp.dataset) == {"digits"}


def test_a_study_pattern_selects_and_a_folder_is_refused(storage, tmp_path):
    path, n = export_csv(storage, ["*:bp"], tmp_path / "bp.csv")
    assert set(pd.read_csv(path).study) == {"architecture:digits:fc:bp"} and n == 3
    from bioscale.errors import UsageError

    with pytest.raises(UsageError, match="is a folder"):
        export_csv(storage, None, tmp_path)


def parse_deepcave_run(run):
    """Read a run folder as the converter's documentation lays it out; assert every rule of its grammar."""
    space = pd.read_csv(run / "configspace.csv")
    trials = pd.read_csv(run / "trials.csv")
    assert {"name", "type", "log", "lower", "upper", "default"} <= set(space.columns)
    metrics = [c for c in trials.columns if c.startswith("metric")]
    assert metrics and all(METRIC_GRAMMAR.match(c) for c in metrics), metrics
    assert {"status", "start_time", "end_time", "budget", "seed"} <= set(trials.columns)
    assert set(trials.status.str.upper()) <= STATUSES
    assert (trials.end_time >= trials.start_time).all() and trials.seed.dtype.kind == "i"
    for row in space.itertuples():
        assert row.type in TYPES and row.name in trials.columns
        values = trials[row.name]
        if row.type == "categorical":
            # the converter takes str() of each item, but each trial's cell as pandas reads it (True/False become booleans)
            items = {str(getattr(row, c)) for c in space.columns if c.startswith("item_") and pd.notna(getattr(row, c))}
            assert all(isinstance(v, str) and v in items for v in values), (row.name, set(values), items)
            assert isinstance(row.default, str) and row.default in items
        else:
            assert values.dtype.kind in "if" and (values >= row.lower).all() and (values <= row.upper).all()
            assert not row.log or row.lower > 0
            assert pd.isna(row.default) or row.lower <= float(row.default) <= row.upper  # the converter takes float(default)
            if row.type == "integer":
                assert (values == values.round()).all()
    return space, trials, metrics


def test_the_deepcave_export_follows_the_converter_grammar(storage, tmp_path):
    runs = export_deepcave(storage, None, tmp_path / "deepcave")
    assert sorted(r.name for r in runs) == ["architecture_digits_fc_bp", "tune_digits_fc_dtp-parallel"]
    space, trials, metrics = parse_deepcave_run(tmp_path / "deepcave" / "tune_digits_fc_dtp-parallel")
    assert metrics == [METRIC] and METRIC_GRAMMAR.match(METRIC).group(1) == contract.VAL_ERROR
    kinds = dict(zip(space.name, space.type))
    assert kinds == {"activation": "categorical", "batch_size": "integer", "forward_eps": "float", "forward_lr": "float",
                     "sigma": "float", "symmetric": "categorical"}
    assert set(trials.symmetric) == {"yes", "no"}  # both choices sampled, read back as the strings the items hold
    assert dict(zip(space.name, space.log))["batch_size"] and float(dict(zip(space.name, space.default))["batch_size"]) == 128
    study = optuna.load_study(study_name="tune:digits:fc:dtp-parallel", storage=storage)
    by_trial = {t.number: t for t in study.get_trials()}
    for number, rows in trials.groupby("trial"):
        t = by_trial[number]
        rows = rows.sort_values("budget")
        if t.state == TrialState.COMPLETE:  # one row per epoch, the lowest error so far, ending at the objective
            assert list(rows.budget) == list(range(1, EPOCHS + 1)) and (rows.status == "SUCCESS").all()
            costs = rows[METRIC].to_numpy()
            assert (np.diff(costs) <= 0).all() and costs[-1] == pytest.approx(t.value)
            assert costs[0] == pytest.approx(t.user_attrs[contract.CURVE]["val"][0])
        elif rows.outcome.iloc[0] == "diverged":  # counts at chance level at the study's budget, as in the report
            assert rows.budget.iloc[-1] == EPOCHS and rows[METRIC].iloc[-1] == pytest.approx(chance_error("digits"))
        elif rows.outcome.iloc[0] == "pruned":  # stopped at epoch 3: budgets up to 3 only
            assert rows.budget.max() == 3 and (rows.status == "SUCCESS").all()
        else:
            assert list(rows.status) == ["CRASHED"] and rows[METRIC].isna().all()
    assert set(trials.trial) == {t.number for t in study.get_trials() if contract.is_finished(t)}
    assert (trials.loc[trials.role == "default", "outcome"] == "complete").all()


def test_configspace_accepts_every_row_as_the_converter_builds_it(storage, tmp_path):
    """Where ConfigSpace is installed: the space built as the converter builds it takes every exported configuration."""
    ConfigSpace = pytest.importorskip("ConfigSpace")
    export_deepcave(storage, ["tune:*"], tmp_path)
    space, trials, _ = parse_deepcave_run(tmp_path / "tune_digits_fc_dtp-parallel")
    cs = ConfigSpace.ConfigurationSpace()
    for row in space.itertuples():
        if row.type == "categorical":
            items = [str(getattr(row, c)) for c in space.columns if c.startswith("item_") and pd.notna(getattr(row, c))]
            cs.add(ConfigSpace.Categorical(row.name, items=items, default=row.default, ordered=False))
        else:
            kind, cast = (ConfigSpace.Float, float) if row.type == "float" else (ConfigSpace.Integer, int)
            cs.add(kind(row.name, bounds=(cast(row.lower), cast(row.upper)), log=bool(row.log),
                        default=cast(float(row.default)) if pd.notna(row.default) else None))
    names = list(cs.keys())
    for _, row in trials.iterrows():
        ConfigSpace.Configuration(cs, values=dict(zip(names, row[names])))


def test_a_conditional_parameter_is_written_at_its_default_and_named_inactive(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    space = {"activation": PAPER_SPACE["activation"]}
    add_study(storage, lambda p: 0.1 + p.get("alpha", 0.0), label="fa", space=space, n_trials=10, epochs=3,
              conditional=lambda p: {"alpha": FloatDistribution(0.0, 0.1)} if p["activation"] == "relu" else {})
    (record,) = read_records(storage, None)
    _, trials = deepcave_frames(record)
    missing = trials[trials.activation == "tanh"]
    assert len(missing) and (missing.alpha == 0.0).all() and (missing.inactive == "alpha").all()
    assert (trials.loc[trials.activation == "relu", "inactive"] == "").all()


def test_the_command_writes_both_formats(storage, tmp_path, capsys):
    assert main(["export", storage, "--format", "csv", "--out", str(tmp_path / "all.csv")]) == 0
    assert "trials written to" in capsys.readouterr().out and len(pd.read_csv(tmp_path / "all.csv"))
    assert main(["export", storage, "--format", "DeepCAVE", "--out", str(tmp_path / "dc"), "--study", "tune:*"]) == 0
    assert [p.name for p in (tmp_path / "dc").iterdir()] == ["tune_digits_fc_dtp-parallel"]


def _run(argv):
    code = ("import sys\nfrom bioscale.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    code = e.code\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'pandas', 'optuna', 'matplotlib', 'sklearn', 'scipy')))\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)


@pytest.mark.parametrize("argv", [["export", "--help"], ["export", "x.db", "--format", "xls", "--out", "o"]],
                         ids=["help", "bad format"])
def test_help_and_a_bad_format_load_no_heavy_library_and_refuse_in_one_line(argv):
    done = _run(argv)
    assert done.stdout.strip().splitlines()[-1] == "[]"
    if "--help" in argv:
        assert done.returncode == 0 and "deepcave" in done.stdout
    else:
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "csv, deepcave" in done.stderr


def test_a_missing_storage_is_one_line_exit_2(tmp_path):
    done = _run(["export", str(tmp_path / "none.db"), "--format", "csv", "--out", str(tmp_path / "o.csv")])
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "none.db" in done.stderr
    assert not (tmp_path / "o.csv").exists()


def test_numeric_choices_are_log_scaled_when_they_lie_evenly_on_a_log_scale():
    from bioscale.analysis.export import _log_spaced

    assert _log_spaced((32, 64, 128, 256)) and _log_spaced((1e-8, 1e-6, 1e-4, 1e-3)) and _log_spaced((1e-4, 1e-6))
    assert not _log_spaced((0.95, 0.99, 0.999)) and not _log_spaced((0, 1, 10, 100)) and not _log_spaced((0.99, 0.999))
