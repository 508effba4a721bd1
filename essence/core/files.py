"""Files written safely: atomically (a kill never leaves half a file), and the SHA256 of a file."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sha256_hasher(path: str | os.PathLike[str], chunk: int = 1 << 22) -> Any:
    """A hashlib SHA256 object fed with the whole file, read in blocks (bounded memory); it can go on
    hashing what is appended later (a resumed download)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA256 of a file."""
    return sha256_hasher(path).hexdigest()


def temp_path(path: str | os.PathLike[str]) -> Path:
    """The name a file is written under before it is moved into place."""
    p = Path(path)
    return p.with_name(p.name + ".tmp")


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` writes the whole file at a temporary name; then it replaces ``path`` in one step."""
    p = Path(path)
    tmp = temp_path(p)
    try:
        write(tmp)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            from essence.core.errors import EssenceError

            raise EssenceError(
                f"The disk is full: could not write {p}. Free some space and try again; "
                f"{'the earlier ' + p.name + ' is intact' if p.exists() else 'nothing was half written'}."
            ) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Indented JSON; non-finite floats become null, tensors and arrays lists."""
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


#: A zip (a ``torch.save`` file, a TorchScript archive) may declare at most this many times its own size
#: in uncompressed entries (plus ZIP_SLACK): PyTorch stores its tensors uncompressed, so a real checkpoint
#: declares about its own size, and an archive bomb declares gigabytes from kilobytes.
ZIP_RATIO = 8
ZIP_SLACK = 64 << 20
#: Entries a zip may list (a checkpoint has one per tensor storage).
ZIP_MAX_ENTRIES = 1 << 20


def check_zip_sizes(path: str | os.PathLike[str]) -> None:
    """Refuse a zip whose directory declares far more bytes than the file holds, before inflating anything.

    Reads only the central directory; readers (``zipfile``, PyTorch's) stop at the declared sizes, so a
    file that passes cannot make them allocate more than about ``ZIP_RATIO`` times its size. Not a zip:
    nothing to check.
    """
    import zipfile

    from essence.core.errors import WeightsError

    p = Path(path)
    try:
        if not zipfile.is_zipfile(p):
            return
        size = p.stat().st_size
        with zipfile.ZipFile(p) as archive:
            entries = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # the reader says what is wrong with it
    total = sum(e.file_size for e in entries)
    if len(entries) > ZIP_MAX_ENTRIES or total > size * ZIP_RATIO + ZIP_SLACK:
        raise WeightsError(
            f"{p}: a {size}-byte zip archive whose {len(entries)} entries would inflate to {total} bytes "
            "(an archive bomb?); refusing to read it."
        )


def torch_load(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, after :func:`check_zip_sizes`: no code runs, and no
    archive bomb inflates."""
    import torch

    check_zip_sizes(path)
    return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
