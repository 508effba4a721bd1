"""Assets as data: JSON loading, validation of what becomes a cache path, duplicates across plugins."""

from __future__ import annotations

import json

import pydantic
import pytest
from weights_support import WeightsTestPlugin, make_asset, make_blob, plugin  # noqa: F401

import essence
from essence.weights.assets import get_assets

BASE = {
    "name": "tiny",
    "kind": "generator",
    "format": "fake-ckpt",
    "filename": "tiny.ckpt",
    "urls": ["https://example.org/tiny.ckpt"],
    "license": "MIT",
}


def test_load_assets_reads_one_or_a_list(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(dict(BASE, sha256="AB" * 32)))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([BASE, dict(BASE, name="tiny2")]))
    (a,) = essence.load_assets(one)
    assert a.sha256 == "ab" * 32  # normalised, so comparisons with hashlib's hexdigest work
    assert [x.name for x in essence.load_assets(many)] == ["tiny", "tiny2"]


@pytest.mark.parametrize(
    "change",
    [
        {"name": "../evil"},
        {"name": ".hidden"},
        {"filename": "sub/dir.pkl"},
        {"filename": "..\\x.pkl"},
        {"sha256": "1234"},
        {"urls": ["ftp://example.org/x"]},
    ],
)
def test_values_that_would_escape_or_break_the_cache_are_refused(change):
    with pytest.raises(pydantic.ValidationError):
        essence.Asset(**dict(BASE, **change))


def test_two_plugins_registering_one_name_is_an_error(plugin):
    from essence.core.plugins import get_host

    data = make_blob(100)
    plugin.add(make_asset("tiny", ["https://example.org/a"], data))
    other = WeightsTestPlugin()
    other.with_converter = False
    other.assets.append(make_asset("tiny", ["https://example.org/b"], data))
    get_host().add(other, "other-plugin", "0", builtin=False)
    with pytest.raises(essence.DuplicateNameError, match="'weights-test' and 'other-plugin'"):
        get_assets()
