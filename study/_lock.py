"""The budget lock: one per study, held while a worker checks the budget and asks for its next trial."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from bioscale.storages import StorageSpec


def lock_path(storage_file: str, key: int) -> Path:
    """The budget lock file of one study in a file storage: beside the storage file, hidden."""
    storage = Path(storage_file)
    return storage.with_name(f".{storage.name}.budget-{key & 0xFFFFFFFFFFFF:x}.lock")


class BudgetLock:
    """A lock shared by every worker of one study, held while a worker checks the budget and asks for a trial.

    PostgreSQL: a session advisory lock (released by the server when a worker dies). SQLite and
    journal files: an flock on a hidden file beside the storage file, so that every worker that
    reaches the storage reaches its lock (never in a per-job or per-node temporary folder; on NFS,
    Linux maps flock onto POSIX locks that hold across nodes). Other storages: no lock (the
    budget may then be exceeded by up to one trial per racing worker).
    """

    def __init__(self, spec: StorageSpec, study_name: str) -> None:
        digest = hashlib.sha1(f"{spec.path or spec.url}\0{study_name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._spec, self._held = spec, False
        self._file = None
        self._connection = None

    def acquire(self) -> None:
        """Block until this worker holds the lock."""
        if self._held:
            return
        if self._spec.kind in ("sqlite", "journal"):
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: no lock
                self._held = True
                return
            if self._file is None:
                path = lock_path(self._spec.path, self._key)
                self._file = open(path, "a+")
                with contextlib.suppress(OSError):
                    path.chmod(0o666)  # another user's workers may share the study
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        elif self._spec.url.startswith("postgresql"):
            from sqlalchemy import text

            if self._connection is None:
                from sqlalchemy import create_engine
                from sqlalchemy.pool import NullPool

                engine = create_engine(self._spec.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
                self._connection = engine.connect()
            self._connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        self._held = True

    def release(self) -> None:
        """Let the next worker in (a no-op when not held)."""
        if not self._held:
            return
        self._held = False
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        elif self._connection is not None:
            from sqlalchemy import text

            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})

    def close(self) -> None:
        """Release and drop the lock's file or connection."""
        self.release()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
