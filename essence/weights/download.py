"""Streamed, resumable, checksummed downloads with the standard library.

A download goes to ``<dest>.part`` beside its destination (``<dest>.part.json`` remembers the URL and
the server's ETag, so a later call resumes with an HTTP Range request), is hashed while it streams,
and is moved onto ``dest`` with an atomic rename only once its size and SHA256 check out. Content that
is wrong (an HTML page, a size or checksum mismatch) is deleted; a partial file left by a network
failure is kept so the next call resumes it. Callers that may run in parallel hold a lock around this
(see :mod:`essence.weights.cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from essence.core.errors import WeightsError
from essence.core.files import sha256_hasher

if TYPE_CHECKING:
    from rich.console import Console

#: Seconds without any data (connecting or reading) before a source counts as failed.
DEFAULT_TIMEOUT = 30.0
#: Seconds one pull may take in all (every source and reconnection), however the data trickles in;
#: ``ESSENCE_DOWNLOAD_DEADLINE`` changes it (0 or ``none``: no deadline).
DEFAULT_DEADLINE = 6 * 3600.0
#: Reconnections per source after the connection drops mid-file, as long as each one made progress.
MAX_RESUMES = 10
#: Seconds to wait before reconnection n: n * RESUME_BACKOFF, at most 1 s.
RESUME_BACKOFF = 0.1
CHUNK = 1 << 16

ProgressCallback = Callable[[int, "int | None"], None]
"""``progress(done_bytes, total_bytes_or_None)``, called as data arrives."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    sha256: str
    size: int


class DownloadError(WeightsError):
    """No source delivered the file; ``reasons`` holds one short line per URL tried."""

    def __init__(self, message: str, reasons: list[str]):
        super().__init__(message)
        self.reasons = reasons


class _Rejected(Exception):
    """The content is wrong (HTML page, wrong size or checksum): the partial file is deleted."""


class _ChecksumMismatch(_Rejected):
    pass


class _Failed(Exception):
    """Network trouble: what arrived is kept, so a later attempt can resume."""


class _Interrupted(_Failed):
    def __init__(self, message: str, progressed: bool):
        super().__init__(message)
        self.progressed = progressed


class _DeadlineExceeded(_Failed):
    """The whole pull took longer than its deadline: no further source is tried."""


def download_deadline(deadline: float | None = None) -> float | None:
    """``deadline`` when given, else ``ESSENCE_DOWNLOAD_DEADLINE`` (seconds; 0 or none: no deadline), else the default."""
    if deadline is not None:
        return deadline if deadline > 0 else None
    raw = os.environ.get("ESSENCE_DOWNLOAD_DEADLINE", "").strip().lower()
    if not raw:
        return DEFAULT_DEADLINE
    if raw in ("0", "none", "off"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise WeightsError(f"ESSENCE_DOWNLOAD_DEADLINE={raw!r} is not a number of seconds.") from None
    if not value > 0 or value != value or value == float("inf"):
        return None if value == float("inf") else DEFAULT_DEADLINE
    return value


class _Restart(Exception):
    """The partial file cannot be resumed from this server: start from byte 0."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def discard_partial(dest: Path) -> None:
    part_path(dest).unlink(missing_ok=True)
    _meta_path(dest).unlink(missing_ok=True)


_HTML_START = re.compile(rb"\s*(<!doctype\s+html|<html|<head|<body|<!--|<\?xml[^>]*>\s*<!doctype\s+html)", re.I)


def looks_like_html(head: bytes) -> bool:
    """True for the start of an HTML page (Google Drive's quota and virus-scan pages, login walls)."""
    return bool(_HTML_START.match(head.removeprefix(b"\xef\xbb\xbf")[:1024]))


def file_looks_like_html(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return looks_like_html(f.read(1024))


def download(
    urls: Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    console: Console | None = None,
    label: str | None = None,
    deadline: float | None = None,
) -> Downloaded:
    """Fetch the first of ``urls`` that delivers the right file to ``dest``; the rest are mirrors.

    ``timeout`` bounds each wait for data; ``deadline`` (seconds, default :func:`download_deadline`) the
    whole pull, so a server that drips a byte now and then cannot hold it for ever.
    ``sha256``/``size`` are checked when given. ``console`` draws a rich progress bar (size, speed,
    ETA); ``progress`` is called with ``(done, total)``. Raises :class:`DownloadError` with one reason
    per URL when none works.
    """
    dest = Path(dest)
    if not urls:
        raise DownloadError(f"No URL to download {dest.name} from.", [])
    reasons: list[str] = []
    limit = download_deadline(deadline)
    bar_deadline = None if limit is None else time.monotonic() + limit
    with _Progress(console, label or dest.name, progress) as bar:
        bar.deadline, bar.limit = bar_deadline, limit
        for i, url in enumerate(urls):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                return _download_from(url, dest, sha256, size, timeout, bar)
            except OSError as exc:  # network errors are caught inside: this is the local disk
                raise WeightsError(
                    f"Could not write {part_path(dest)}: {exc.strerror or exc}. "
                    "Free some space, or set ESSENCE_HOME to a writable folder."
                ) from exc
            except _Rejected as exc:
                discard_partial(dest)
                reasons.append(f"{url} -> {exc}")
            except _DeadlineExceeded as exc:
                reasons.append(f"{url} -> {exc}")
                break
            except _Failed as exc:
                reasons.append(f"{url} -> {exc}")
            if console is not None and i + 1 < len(urls):
                console.print(f"[yellow]{reasons[-1]}[/]; trying {urls[i + 1]}", soft_wrap=True)
    kept = part_path(dest)
    tail = f" The partial file {kept} is kept; the next try resumes it." if kept.exists() else ""
    raise DownloadError(f"Could not download {dest.name}: " + "; ".join(reasons) + "." + tail, reasons)


def _download_from(url: str, dest: Path, sha256: str | None, size: int | None, timeout: float, bar: _Progress) -> Downloaded:
    part = part_path(dest)
    meta = _read_meta(dest)
    same_source = meta.get("url") == url
    # A partial file from another URL is only worth resuming when the checksum will catch a mix-up.
    if part.exists() and not (same_source or (sha256 and meta.get("sha256") == sha256)):
        discard_partial(dest)
    resumes = restarts = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            discard_partial(dest)
            offset = 0
        validator = meta.get("validator") if same_source else None
        try:
            if size is not None and offset == size:  # complete but never checked (a killed process)
                return _finish(url, dest, sha256_hasher(part), offset, sha256, size)
            return _fetch(url, dest, offset, validator, sha256, size, timeout, bar)
        except _ChecksumMismatch:
            if offset == 0 or restarts:
                raise
            restarts += 1  # the resumed bytes were bad: one fresh try from this source
            discard_partial(dest)
        except _Restart:
            if restarts:
                raise _Failed("the server cannot resume and the restart failed too") from None
            restarts += 1
            discard_partial(dest)
        except _Interrupted as exc:
            if not exc.progressed or resumes >= MAX_RESUMES:
                raise
            resumes += 1
            time.sleep(min(RESUME_BACKOFF * resumes, 1.0))
        meta = _read_meta(dest)
        same_source = meta.get("url") == url


def _fetch(
    url: str,
    dest: Path,
    offset: int,
    validator: str | None,
    sha256: str | None,
    size: int | None,
    timeout: float,
    bar: _Progress,
) -> Downloaded:
    import http.client
    import urllib.error
    import urllib.request

    from essence.version import __version__

    headers = {"User-Agent": f"essence/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _Restart() from None
        raise _Failed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Failed(_reason(exc.reason, timeout, "connect")) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Failed(_reason(exc, timeout, "answer")) from None

    with resp:
        status = getattr(resp, "status", None) or 200
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype in ("text/html", "application/xhtml+xml"):
            raise _Rejected("got an HTML page instead of the file (a quota, login or error page?)")
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise _Restart()
        else:  # 200: the whole file (the server ignored Range, or the file changed since)
            offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            raise _Rejected(f"the server has {total} bytes, expected {size}")
        expected = total if total is not None else size

        part = part_path(dest)
        if offset:
            hasher = sha256_hasher(part)
        else:
            hasher = hashlib.sha256()
            etag = resp.headers.get("ETag")
            modified = resp.headers.get("Last-Modified")
            strong = etag if etag and not etag.startswith("W/") else modified
            _write_meta(dest, {"url": url, "validator": strong, "sha256": sha256})
        done = start_at = offset
        head = b"" if offset == 0 else None  # the first bytes of the file, to spot HTML pages
        # read1 returns what has arrived, so an interruption loses nothing already received.
        read = getattr(resp, "read1", resp.read)
        bar.start(done, expected)
        with open(part, "ab" if offset else "wb") as f:
            while True:
                if bar.deadline is not None and time.monotonic() > bar.deadline:
                    f.flush()
                    got = f"{done} of {expected} bytes" if expected is not None else f"{done} bytes"
                    raise _DeadlineExceeded(
                        f"gave up at the {bar.limit:g} s deadline with {got} received (the server sends too slowly); "
                        f"the partial file is kept and the next pull resumes it (ESSENCE_DOWNLOAD_DEADLINE sets the deadline)"
                    )
                try:
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    f.flush()
                    raise _Interrupted(_reason(exc, timeout, "read", done), done > start_at) from None
                if head is not None and (len(head) >= 512 or not chunk):
                    if looks_like_html(head):
                        raise _Rejected("got an HTML page instead of the file (a quota, login or error page?)")
                    head = None
                if not chunk:
                    break
                if head is not None:
                    head += chunk
                f.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if expected is not None and done > expected:
                    raise _Rejected(f"the server sent more than the expected {expected} bytes")
                bar.update(done)
            f.flush()
            os.fsync(f.fileno())
    if expected is not None and done < expected:
        raise _Interrupted(f"the connection closed after {done} of {expected} bytes", done > start_at)
    return _finish(url, dest, hasher, done, sha256, size)


def _finish(url: str, dest: Path, hasher: Any, done: int, sha256: str | None, size: int | None) -> Downloaded:
    if size is not None and done != size:
        raise _Rejected(f"got {done} bytes, expected {size} (a truncated file)")
    digest = hasher.hexdigest()
    if sha256 is not None and digest != sha256:
        raise _ChecksumMismatch(f"wrong SHA256 {digest}, expected {sha256}")
    os.replace(part_path(dest), dest)
    _meta_path(dest).unlink(missing_ok=True)
    return Downloaded(dest, url, digest, done)


def _content_range(value: str | None) -> tuple[int, int | None]:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        raise _Restart()
    return int(m.group(1)), (int(m.group(3)) if m.group(3) != "*" else None)


def _reason(exc: object, timeout: float, phase: str = "read", done: int | None = None) -> str:
    """What went wrong, in words: for a timeout, which wait ran out (connecting, the answer, the data)."""
    import socket

    if isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc):
        if phase == "connect":
            return f"timed out after {timeout:g} s trying to connect (no answer from the host)"
        if phase == "answer":
            return f"timed out after {timeout:g} s without data: the server accepted the connection but sent no answer"
        after = f" after {done} bytes" if done else ""
        return f"timed out after {timeout:g} s without data{after}: the server stopped sending"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, socket.gaierror):
        return "could not resolve the host name"
    if isinstance(exc, str):
        return exc
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_meta(dest: Path) -> dict[str, Any]:
    try:
        data = json.loads(_meta_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_meta(dest: Path, data: dict[str, Any]) -> None:
    path = _meta_path(dest)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


class _Progress:
    """A rich progress bar (when given a console) plus the caller's callback."""

    def __init__(self, console: Console | None, label: str, callback: ProgressCallback | None):
        self.console, self.label, self.callback = console, label, callback
        self.total: int | None = None
        self.deadline: float | None = None  # time.monotonic() by which the whole pull must be done
        self.limit: float | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.console is not None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
        return self

    def start(self, done: int, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(self.label, total=total, completed=done)
            else:
                self._bar.reset(self._task, total=total, completed=done)
        if self.callback is not None:
            self.callback(done, total)

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
        if self.callback is not None:
            self.callback(done, self.total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
