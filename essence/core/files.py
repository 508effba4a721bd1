"""Files written safely: atomically (a kill never leaves half a file), and the SHA256 of a file."""

from __future__ import annotations

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
