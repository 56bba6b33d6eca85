"""One reading of a storage address: the import-free check of a launch and the opening of a storage agree on every form."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioscale.errors import UsageError
from bioscale.spec import LaunchSpec, storage_kind
from bioscale.storage_url import read_address
from bioscale.storages import parse_storage


@pytest.mark.parametrize(("url", "kind", "file"), [
    ("studies.db", "sqlite", "studies.db"), ("studies.sqlite3", "sqlite", "studies.sqlite3"),
    ("sqlite:///studies.db", "sqlite", "studies.db"), ("sqlite+pysqlite:///studies.db", "sqlite", "studies.db"),
    ("trials.log", "journal", "trials.log"), ("journal:///trials.log", "journal", "/trials.log"),
    ("journal:trials.log", "journal", "trials.log"), ("journal://trials.log", "journal", "trials.log"),
])
def test_a_file_storage_is_the_same_file_to_the_launch_check_and_to_the_opener(url, kind, file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if file.startswith("/"):  # an absolute journal path: point it into the temporary folder
        url, file = url.replace(file, str(tmp_path / "trials.log")), str(tmp_path / "trials.log")
    assert storage_kind(url) == (kind, file)
    opened = parse_storage(url)
    assert opened.kind == kind and opened.path == str(Path(file).resolve())


def test_a_server_is_a_server_to_both():
    assert storage_kind("postgresql://u:p@host/db") == ("rdb", None)
    assert parse_storage("postgresql://u:p@host/db").kind == "rdb"


@pytest.mark.parametrize("url", ["studies", "notes.txt", "bioscale"])
def test_a_bare_path_of_no_known_ending_is_refused_by_both_in_the_same_words(url):
    with pytest.raises(UsageError) as by_reader:
        read_address(url)
    with pytest.raises(UsageError) as by_opener:
        parse_storage(url)
    with pytest.raises(UsageError) as by_launch:
        LaunchSpec(executor="local").checked(url)
    assert str(by_reader.value) == str(by_opener.value) == str(by_launch.value)
    assert "path ending in .db or .log" in str(by_reader.value)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_an_sqlite_url_without_a_file_is_refused(url):
    with pytest.raises(UsageError, match="keeps nothing"):
        parse_storage(url)


def test_none_is_the_default_storage():
    assert read_address(None).url == "sqlite:///bioscale.db" and storage_kind(None) == ("sqlite", "bioscale.db")


def test_a_written_sqlite_storage_commits_in_write_ahead_log_mode_and_a_reader_opens_it_plainly(tmp_path):
    import sqlite3

    import optuna

    from bioscale.storages import open_existing, open_storage

    url = f"sqlite:///{tmp_path / 'wal.db'}"
    writer = open_storage(url, heartbeat=False)
    optuna.create_study(storage=writer, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    connection = writer.engine.raw_connection()
    try:
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no wait for the disk per commit
    finally:
        connection.close()
    assert sqlite3.connect(tmp_path / "wal.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader = open_existing(url)
    assert len(optuna.load_study(storage=reader, study_name="s").trials) == 2
    writer.engine.dispose()
    reader.engine.dispose()
    assert not (tmp_path / "wal.db-wal").exists()  # folded back into the file when the last connection closed
