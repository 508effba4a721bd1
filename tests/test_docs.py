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


def test_every_loss_context_field_and_interface_member_is_documented():
    """docs/plugins.md names every LossContext field (in its shapes table) and every member of the
    Generator and Encoder interfaces, so a plugin author never has to read the source to find one."""
    import dataclasses

    from essence.core.interfaces import Encoder, Generator, LossContext

    for f in dataclasses.fields(LossContext):
        assert f"| `{f.name}` |" in PLUGINS_DOC, f"docs/plugins.md: LossContext.{f.name} is not in the table"
    for cls in (Generator, Encoder):
        names = set(getattr(cls, "__annotations__", {})) | {
            n for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))
        }
        for name in sorted(names):
            assert f"`{name}" in PLUGINS_DOC, f"docs/plugins.md does not name {cls.__name__}.{name}"
    assert "needs=" in PLUGINS_DOC and "--set losses." in PLUGINS_DOC
