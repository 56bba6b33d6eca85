"""A storage address read in one place, without importing Optuna or SQLAlchemy: which kind of storage, and its file.

`sqlite:///FILE.db` (the default is `sqlite:///bioscale.db`) or a bare path ending in .db, .sqlite or .sqlite3 is an
SQLite file; `journal:///FILE.log` or a bare path ending in .log is a journal file; any other URL with `://`
(`postgresql://...`, `mysql://...`) is a database server. A bare path with another ending names no kind of
storage and is refused. The command line checks a launch with this before torch loads; bioscale.storages opens it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import defaults
from .errors import UsageError

HINT = "use sqlite:///FILE.db, postgresql://USER:PASSWORD@HOST/DATABASE, journal:///FILE.log or a path ending in .db or .log"
SQLITE_ENDINGS = (".db", ".sqlite", ".sqlite3")


@dataclass(frozen=True)
class StorageAddress:
    """A storage address as written: `kind` is 'sqlite', 'journal' or 'rdb' (a database server)."""

    url: str
    kind: str
    path: str | None  # the file of an SQLite or journal storage, as written (None for a server; '' when none is named)


def read_address(url: str | None) -> StorageAddress:
    """The kind and file of a storage address (None: bioscale's default); a bare path of no known ending is a UsageError."""
    url = (url or defaults.STORAGE).strip()
    if url.startswith("journal:"):
        rest = url[len("journal:"):]
        path = "/" + rest.lstrip("/") if rest.startswith("///") else rest.lstrip("/") if rest.startswith("//") else rest
        return StorageAddress(url, "journal", path)
    if "://" not in url:
        if url.endswith(".log"):
            return StorageAddress(url, "journal", url)
        if url.endswith(SQLITE_ENDINGS):
            return StorageAddress(url, "sqlite", url)
        raise UsageError(f"cannot read storage {url!r}: {HINT}")
    if url.split(":", 1)[0].split("+", 1)[0] == "sqlite":
        database = url.split("://", 1)[1]
        return StorageAddress(url, "sqlite", database[1:].split("?", 1)[0] if database.startswith("/") else "")
    return StorageAddress(url, "rdb", None)
