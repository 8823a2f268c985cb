"""The answer cache (--cache PATH): successful answers keyed by request fingerprint,
so a request already answered in any earlier run is not paid for again.

An embedded SQLite file: every write is its own transaction, so a SIGKILL loses at
most the answer being written and corrupts nothing; write-ahead logging and a busy
timeout let concurrent runs and shards share one file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType

import orjson

from worker.domain.answer import Answer
from worker.errors import ConfigError

BUSY_TIMEOUT_MS = 30_000
_OPEN_ATTEMPTS = 20
_OPEN_RETRY_S = 0.02
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    fingerprint TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    request_id TEXT,
    body BLOB NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a cache file holds."""

    answers: int
    bytes: int
    oldest: float | None
    newest: float | None


class AnswerCache:
    """One open cache file; `with AnswerCache(path) as cache:`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> AnswerCache:
        """Open (creating) the file.

        Raises:
            ConfigError: it cannot be opened, or is no cache.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # It holds answers, like the results file: private to its owner (the
            # journal files SQLite adds take the same mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = _opened(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the cache {self.path}: {exc}") from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "use AnswerCache as a context manager"
        return self._db

    def get(self, fingerprint: str) -> Answer | None:
        """The answer stored for a request, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT status, request_id, body FROM answers WHERE fingerprint = ?",
                (fingerprint,),
            )
            .fetchone()
        )
        if row is None:
            return None
        body = orjson.loads(row[2])
        if not isinstance(body, dict):
            return None
        return Answer(status=row[0], body=body, request_id=row[1])

    def put(self, fingerprint: str, answer: Answer) -> None:
        """Store a successful answer (the first one stored for a request stays)."""
        self._conn().execute(
            "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
            (
                fingerprint,
                answer.status,
                answer.request_id,
                orjson.dumps(answer.body),
                time.time(),
            ),
        )

    def stats(self) -> CacheStats:
        """How many answers, how many bytes, and when the oldest and newest came."""
        count, oldest, newest = (
            self._conn()
            .execute("SELECT count(*), min(created), max(created) FROM answers")
            .fetchone()
        )
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"))
            if p.exists()
        )
        return CacheStats(count, size, oldest, newest)

    def prune(self, older_than_days: float) -> int:
        """Forget answers stored more than that many days ago; return how many."""
        cutoff = time.time() - timedelta(days=older_than_days).total_seconds()
        db = self._conn()
        removed = db.execute(
            "DELETE FROM answers WHERE created < ?", (cutoff,)
        ).rowcount
        db.execute("VACUUM")
        return int(removed)


def _opened(path: Path) -> sqlite3.Connection:
    """The cache's connection, set up. Two runs opening a new file at once race
    to switch it to write-ahead logging, which waits on no busy handler: the
    loser tries again shortly.

    Raises:
        sqlite3.Error: still locked after the retries, or no SQLite file.
    """
    attempt = 0
    while True:
        db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(_SCHEMA)
        except sqlite3.OperationalError as exc:
            db.close()
            attempt += 1
            if "locked" not in str(exc) or attempt == _OPEN_ATTEMPTS:
                raise
            time.sleep(_OPEN_RETRY_S * attempt)
        else:
            return db
