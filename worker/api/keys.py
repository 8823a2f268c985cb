"""The run's API key, and its rotation: a key read from MIRA_API_KEY_FILE is
read again when Mira refuses it (401), because Kubernetes updates a mounted
Secret in place and an operator rotates a key by writing the file. A key from
MIRA_API_KEY cannot change, so its 401 stays fatal.

Neither key is ever logged: only that the key changed, and why a new one was
not taken.
"""

from __future__ import annotations

import logging
from pathlib import Path

from worker.config import KEY_FORMAT, KEY_PATTERN
from worker.logs import register_secret

log = logging.getLogger("worker.run")


class KeyRing:
    """The key requests carry now, and its generation (1 for the first key,
    one more at each rotation)."""

    __slots__ = ("_file", "_key", "generation", "headers", "rotations")

    def __init__(self, key: str, *, file: Path | None = None) -> None:
        register_secret(key)
        self._key = key
        self._file = file  # None: the key cannot change
        self.generation = 1
        self.rotations = 0
        # One dict per key: every request of a generation shares it.
        self.headers = {"Authorization": f"Bearer {key}"}

    @property
    def key(self) -> str:
        """The key in use (for the account routes; never for a log)."""
        return self._key

    def renewed(self, since: int) -> bool:
        """After a 401 for a request sent with key generation `since`: True
        when a newer key is there to send it again with (another request may
        already have read it); False when the refusal stands."""
        if self.generation > since:
            return True
        if self._file is None:
            return False
        new = self._read_file()
        if new is None:
            return False
        register_secret(new)
        self._key = new
        self.headers = {"Authorization": f"Bearer {new}"}
        self.generation += 1
        self.rotations += 1
        log.warning(
            "the API key was rotated: Mira refused the key in use (401) and "
            "MIRA_API_KEY_FILE (%s) holds a new one; the refused request is sent "
            "again with it",
            self._file,
        )
        return True

    def _read_file(self) -> str | None:
        """A new well-formed key from the file, or None (and why, logged)."""
        assert self._file is not None
        try:
            raw = self._file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            log.error("Mira refused the key (401); MIRA_API_KEY_FILE: %s", reason)
            return None
        new = raw.strip()
        if not KEY_PATTERN.fullmatch(new):
            log.error(
                "Mira refused the key (401), and MIRA_API_KEY_FILE (%s) now holds "
                "no Mira key (expected %s, got %d characters)",
                self._file,
                KEY_FORMAT,
                len(new),
            )
            return None
        if new == self._key:
            log.error(
                "Mira refused the key (401), and MIRA_API_KEY_FILE (%s) still "
                "holds it: no new key to rotate to",
                self._file,
            )
            return None
        return new
