"""One command-line convention for storages: every command that reads one takes --storage, with one default and one refusal."""

from __future__ import annotations

import json

import optuna
import pytest

from bioscale.analysis.synthetic import PAPER_SPACE, add_study
from bioscale.cli import main

# Every command that reads a storage, with what it needs beside the storage.
READERS = {
    "study status": ["study", "status"],
    "study list": ["study", "list"],
    "study best": ["study", "best"],
    "study evaluate": ["study", "evaluate"],
    "dashboard": ["dashboard"],
    "analyze": ["analyze", "--out", "report"],
    "export": ["export", "--format", "csv", "--out", "trials.csv"],
}


def _refusal(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_every_reader_refuses_a_missing_storage_given_by_storage_in_the_same_words(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = str(tmp_path / "none.db")
    refusals = {name: _refusal([*argv, "--storage", missing], capsys) for name, argv in READERS.items()}
    assert len(set(refusals.values())) == 1, refusals
    assert "none.db" in refusals["export"] and "no such file" in refusals["export"]
    assert not list(tmp_path.iterdir())  # nothing written, not even the report folder or the CSV


def test_every_reader_has_the_same_default_storage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    refusals = {name: _refusal(argv, capsys) for name, argv in READERS.items()}
    assert len(set(refusals.values())) == 1 and "sqlite:///bioscale.db" in refusals["study list"], refusals


def test_the_positional_storage_of_status_and_export_is_refused_in_the_same_words(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flag = _refusal(["study", "status", "--storage", "none.db"], capsys)
    assert _refusal(["study", "status", "none.db"], capsys) == flag
    assert _refusal(["export", "none.db", "--format", "csv", "--out", "o.csv"], capsys) == flag


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """A real SQLite storage holding two small finished studies."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"forward_lr": PAPER_SPACE["forward_lr"]}
    add_study(url, lambda p: 0.1, label="fa", space=space, n_trials=3, epochs=2)
    add_study(url, lambda p: 0.2, label="bp", space=space, n_trials=2, epochs=2, seed=1)
    return url


def _status(argv, capsys):
    assert main(["study", "status", *argv, "--json"]) == 0
    return [row["study"] for row in json.loads(capsys.readouterr().out)]


def test_status_takes_storage_and_pattern_by_flag_or_position(storage, capsys):
    everything = _status(["--storage", storage], capsys)
    assert len(everything) == 2 and _status([storage], capsys) == everything
    (fa,) = [name for name in everything if name.endswith(":fa")]
    assert _status(["--storage", storage, "*:fa"], capsys) == [fa] == _status([storage, "*:fa"], capsys)


def test_export_takes_storage_by_flag_or_position(storage, tmp_path, capsys):
    assert main(["export", "--storage", storage, "--format", "csv", "--out", str(tmp_path / "a.csv")]) == 0
    assert main(["export", storage, "--format", "csv", "--out", str(tmp_path / "b.csv")]) == 0
    assert "5 trials written" in capsys.readouterr().out
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("argv", [["study", "status", "a.db", "*", "--storage", "b.db"],
                                  ["export", "a.db", "--storage", "b.db", "--format", "csv", "--out", "o.csv"]],
                         ids=["status", "export"])
def test_a_storage_given_twice_is_refused(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert "give the storage once" in _refusal(argv, capsys)
