"""An inter-process lock on a file, so two processes never write the same cache entry at once.

The OS drops the lock when its holder dies (even by SIGKILL), so a killed download never blocks the
next one. Lock files are never deleted: deleting a lock file that another process is waiting on lets
two processes hold "the" lock at once.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from essence.core.errors import WeightsError


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """``with FileLock(path, on_wait=...):`` waits (polling) until no other process holds ``path``.

    ``on_wait()`` is called once when the lock is busy, to tell the user why nothing happens.
    Not re-entrant: a process must not take the same lock twice.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        on_wait: Callable[[], None] | None = None,
        timeout: float | None = None,
        poll: float = 0.1,
        busy: Callable[[], Exception] | None = None,
    ) -> None:
        self.path = Path(path)
        #: When given, a lock held by another process raises ``busy()`` at once instead of waiting.
        self.busy = busy
        self.on_wait = on_wait
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WeightsError(
                f"Cannot write the lock file {self.path}: {exc.strerror or exc}. "
                "Set ESSENCE_HOME to a writable folder."
            ) from exc
        start = time.monotonic()
        waited = False
        while not _try_lock(fd):
            if self.busy is not None:
                os.close(fd)
                raise self.busy()
            if not waited and self.on_wait is not None:
                self.on_wait()
            waited = True
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                os.close(fd)
                raise WeightsError(
                    f"Another process has held {self.path} for over {self.timeout:.0f} s. "
                    "If no other essence command is running, delete that file and try again."
                )
            time.sleep(self.poll)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)
