"""Whether intent can be made durable: the journal's health, and the error a request gets when it cannot.

Kept apart from the journal's file handling so the store, the API and the metrics share one vocabulary:
`NotDurable.reason` is `state_not_writable` when the state directory refuses writes (ENOSPC, EROFS, EIO,
permissions; or a write that did not finish in time) and `journal_error` for anything else (a bug).
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

log = logging.getLogger("flow_manager.journal")


class NotDurable(Exception):
    """An intent could not be written to the state directory; it was withdrawn (never applied)."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason, self.message, self.details = reason, message, {"reason": reason, **details}


def describe(exc: BaseException) -> tuple[str, str, str | None]:
    """(reason, human-readable error, errno name) of a failed journal write."""
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
        text = exc.strerror or str(exc)
        return "state_not_writable", f"{text} ({name})" if name else text, name
    return "journal_error", f"{type(exc).__name__}: {exc}", None


class StateDirError(Exception):
    """The state directory cannot be created, read or written at start: the manager does not start."""

    REFUSING = (errno.EROFS, errno.EACCES, errno.EPERM)

    def __init__(self, path: object, exc: OSError) -> None:
        super().__init__(f"state directory {path} cannot be used: {exc.strerror or exc}")

    @classmethod
    def refuses_writes(cls, exc: OSError) -> bool:
        """Read-only or not ours, as opposed to full (ENOSPC: the manager starts and reports it)."""
        return exc.errno in cls.REFUSING


class JournalHealth:
    """Is the state directory taking writes? Logged once per change of the answer, never per retry."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writable = True
        self.since = time.time()  # when `writable` took its current value
        self.last_error: str | None = None
        self.reason: str | None = None
        self.errno: str | None = None
        self.failed_writes = 0  # every failed attempt since the manager started

    def failed(self, exc: BaseException) -> NotDurable:
        self.reason, self.last_error, self.errno = describe(exc)
        self.failed_writes += 1
        if self.writable:
            self.writable, self.since = False, time.time()
            if self.reason == "state_not_writable":
                log.error(
                    "state directory %s is not writable: %s; requests that change intent answer system_error (state_not_writable) until it is",
                    self.path,
                    self.last_error,
                )
            else:
                log.error(
                    "journal writer failed (%s); requests that change intent answer system_error (journal_error) until it succeeds",
                    self.last_error,
                    exc_info=exc,
                )
        return self.error()

    def succeeded(self) -> None:
        if not self.writable:
            log.warning("state directory %s is writable again after %.1f s", self.path, time.time() - self.since)
            self.writable, self.since = True, time.time()

    def error(self, message: str | None = None) -> NotDurable:
        reason = self.reason or "state_not_writable"
        what = "is not writable" if reason == "state_not_writable" else "could not be written"
        error = self.last_error or "an earlier change of the same record could not be saved"
        return NotDurable(
            reason, message or f"the state directory {self.path} {what}: {error}; the request was not applied", path=self.path, error=error
        )

    def timed_out(self, seconds: float) -> NotDurable:
        """A write that hangs (a stalled disk) is a directory not taking writes too, until one finishes."""
        if self.writable:
            self.failed(OSError(f"a write did not finish within {seconds:g} s"))
        else:
            self.failed_writes += 1
        return NotDurable(
            "state_not_writable",
            f"the intent did not reach the state directory {self.path} within {seconds:g} s; the request was not applied",
            path=self.path,
            error=self.last_error or f"a write did not finish within {seconds:g} s",
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "writable": self.writable,
            "since": self.since,
            "path": self.path,
            "last_error": self.last_error,
            "reason": None if self.writable else self.reason,
            "errno": self.errno,
            "failed_writes": self.failed_writes,
        }
