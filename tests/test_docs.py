"""Docs that cannot drift: every hook documented with its signature, included code verbatim."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from essence.core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = (ROOT / "docs" / "plugins.md").read_text()


def hook_signatures() -> list[str]:
    specs = [fn for name, fn in vars(hookspecs).items() if name.startswith("register_") and callable(fn)]
    assert specs, "no hookspecs found"
    return [f"{fn.__name__}({', '.join(inspect.signature(fn).parameters)})" for fn in specs]


def test_every_hook_is_documented_with_its_signature():
    for signature in hook_signatures():
        assert f"### `{signature}`" in PLUGINS_DOC, f"docs/plugins.md does not document {signature}"


def test_included_code_is_verbatim():
    includes = re.findall(r"<!-- include: (\S+) -->\n```\w*\n(.*?)```", PLUGINS_DOC, flags=re.S)
    assert includes
    for path, body in includes:
        assert body == (ROOT / path).read_text(), f"docs/plugins.md is out of date with {path}"
