"""Storage URLs -> Optuna storages, checked before anything is created.

Accepted (read by `bioscale.storage_url`): `sqlite:///FILE.db` (the default is `sqlite:///bioscale.db`),
a path ending in `.db`, any SQLAlchemy URL Optuna's RDBStorage takes (`postgresql://USER:PASS@HOST/DB`,
`mysql://...`), and journal files for many processes on one machine: `journal:///FILE.log` or a path
ending in `.log`. RDB storages get heartbeats, so a killed worker's trial is failed and re-queued.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from . import defaults
from .errors import UsageError, first_line
from .storage_url import HINT, read_address

DEFAULT_STORAGE = defaults.STORAGE
HEARTBEAT_INTERVAL = 20  # seconds between a running trial's heartbeats
GRACE_PERIOD = 60  # seconds without a heartbeat before a trial counts as dead
MAX_RETRY = 2  # how often a dead worker's trial is re-queued


@dataclass(frozen=True)
class StorageSpec:
    """A checked storage address: `kind` is 'sqlite', 'rdb' (a database server) or 'journal'."""

    url: str  # what Optuna (and optuna-dashboard) take: an SQLAlchemy URL, or the journal's path
    kind: str
    path: str | None = None  # the file for sqlite and journal storages

    def display(self) -> str:
        """The URL with any password hidden, for messages."""
        return hide_password(self.url)


def hide_password(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:***@h/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    if ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}@{host}"


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, overridable by $BIOSCALE_HEARTBEAT_INTERVAL and $BIOSCALE_GRACE_PERIOD."""
    try:
        interval = int(os.environ.get("BIOSCALE_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL))
        grace = int(os.environ.get("BIOSCALE_GRACE_PERIOD", max(GRACE_PERIOD, 2 * interval)))
    except ValueError:
        raise UsageError("BIOSCALE_HEARTBEAT_INTERVAL and BIOSCALE_GRACE_PERIOD must be whole numbers of seconds") from None
    if interval < 1 or grace <= interval:
        raise UsageError(f"heartbeat interval ({interval} s) must be positive and below the grace period ({grace} s)")
    return interval, grace


def parse_storage(url: str | None, *, must_exist: bool = False) -> StorageSpec:
    """Check a storage address without creating anything; raises UsageError with a one-line reason."""
    address = read_address(url)
    url = address.url
    if address.kind == "journal":
        return _file_spec(address.path, "journal", must_exist, url)
    if address.kind == "sqlite":
        if address.path in ("", ":memory:"):
            raise UsageError(f"storage {url!r} keeps nothing: give a file, e.g. sqlite:///bioscale.db")
        return _file_spec(address.path, "sqlite", must_exist, url)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"malformed storage URL {hide_password(url)!r}: {HINT}") from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "mysql", "mariadb", "oracle", "mssql"):
        raise UsageError(f"unknown storage scheme {parsed.drivername!r} in {hide_password(url)!r}: {HINT}")
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver changed (psycopg2 -> psycopg 3): use the one installed.
        import importlib.util

        driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d)), "psycopg2")
        url = f"postgresql+{driver}://" + url.split("://", 1)[1]
    return StorageSpec(url, "rdb")


def _file_spec(path: str, kind: str, must_exist: bool, original: str) -> StorageSpec:
    if not path:
        raise UsageError(f"storage {original!r} names no file: {HINT}")
    file = Path(path).expanduser()
    if not file.parent.is_dir():
        raise UsageError(f"storage {original!r}: folder {str(file.parent)!r} does not exist")
    if must_exist and not file.is_file():
        raise UsageError(f"storage {original!r}: no such file {str(file)!r}")
    if file.is_dir():
        raise UsageError(f"storage {original!r}: {str(file)!r} is a folder, not a file")
    absolute = str(file.resolve())
    return StorageSpec(f"sqlite:///{absolute}" if kind == "sqlite" else absolute, kind, absolute)


def open_storage(spec: StorageSpec | str | None, *, heartbeat: bool = True, create: bool = True) -> BaseStorage:
    """An Optuna storage for a checked address; a database server that cannot be reached raises UsageError.

    With `create=False` an SQLite file must already hold Optuna's tables, and they are left as they
    are (a stray .db file is never turned into a storage); database servers get Optuna's tables as usual.
    """
    if not isinstance(spec, StorageSpec):
        spec = parse_storage(spec)
    if spec.kind == "journal":
        try:
            return JournalStorage(JournalFileBackend(spec.url))
        except Exception as error:
            raise UsageError(f"cannot read {spec.url!r} as an Optuna journal file ({error}); "
                             "pass --storage sqlite:///FILE.db for a database") from None
    read_only_file = spec.kind == "sqlite" and not create
    if read_only_file:
        _check_sqlite_file(spec.path, spec.display())
    kwargs: dict = {"skip_table_creation": read_only_file}
    if heartbeat:
        interval, grace = heartbeat_settings()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs.update(heartbeat_interval=interval, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    if spec.kind == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 60, **({} if read_only_file else {"factory": WriteAheadConnection})}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if spec.url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    last: Exception | None = None
    for attempt in range(4):  # several workers creating the tables at once may collide; retry
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(spec.url, engine_kwargs=engine_kwargs, **kwargs)
        except ImportError as error:
            raise UsageError(f"storage {spec.display()} needs a database driver: {error} "
                             f"(for PostgreSQL: pip install psycopg2-binary)") from None
        except Exception as error:  # sqlalchemy.exc.OperationalError and friends
            last = error
            if _unreachable(error) or "upgrade" in str(error):
                break
            time.sleep(0.5 + attempt)
    reason = first_line(getattr(last, "orig", None) or last) if last else "unknown error"
    if "upgrade" in str(last):
        raise UsageError(f"storage {spec.display()} was written by another Optuna version ({reason}); "
                         "run `optuna storage upgrade --storage URL` first")
    raise UsageError(f"cannot open storage {spec.display()}: {reason}; check the URL, the server and the credentials")


class WriteAheadConnection(sqlite3.Connection):
    """An SQLite connection in write-ahead-log mode with synchronous=NORMAL, for the processes that write a study.

    Optuna commits every attribute on its own (about 40 commits a trial); in SQLite's default rollback
    journal each commit waits for the disk (1-12 ms here), in WAL mode with NORMAL it does not (0.01 ms).
    A crashed process loses nothing committed; a power cut may lose the last commits, never the file.
    SQLite folds the log back into the file when the last connection closes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def open_existing(storage: str | None) -> BaseStorage:
    """An existing storage, for reading: nothing is created, no heartbeats."""
    return open_storage(parse_storage(storage, must_exist=True), heartbeat=False, create=False)


def _check_sqlite_file(path: str, shown: str) -> None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise UsageError(f"storage {shown!r}: {path} is not a readable SQLite database ({error})") from None
    if "studies" not in tables:
        raise UsageError(f"storage {shown!r}: {path} holds no Optuna studies; point --storage at the database the studies wrote")


def _unreachable(error: Exception) -> bool:
    text = str(error).lower()
    return ("database" in text and "does not exist" in text) or any(
        s in text for s in ("could not connect", "connection refused", "could not translate host",
                            "authentication failed", "timeout expired", "unable to open"))


def supports_heartbeat(storage: BaseStorage) -> bool:
    """Whether a killed worker's trial will be noticed (heartbeats on an RDB storage)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)
