"""The registry: lookup, suggestions, config validation, fields."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

import essence
from essence import ConfigError, UnknownComponentError
from essence.core.errors import EssenceError
from essence.core.registry import Registry


class Cfg(essence.ComponentConfig):
    size: int = Field(256, description="Output size in pixels.")
    mode: Literal["fast", "exact"] = "exact"
    weights: str | None = None


def make_registry() -> Registry:
    reg = Registry()
    register = reg.registrar("generator", "test-plugin")
    register("stylegan2", lambda c: c, config=Cfg, aliases=["sg2"], tiny={"size": 8})
    register("stylegan2-ffhq", lambda c: c, config=Cfg, defaults={"size": 1024})
    register("stylegan2-church", lambda c: c, config=Cfg, defaults={"size": 256})
    for i in range(20):
        register(f"unrelated-{i}", lambda c: c)
    return reg


def test_unknown_name_suggests_close_matches_only():
    with pytest.raises(UnknownComponentError) as info:
        make_registry().get("generator", "stylegan2-ffqh")
    message = str(info.value)
    assert message.startswith("Unknown generator 'stylegan2-ffqh'. Did you mean 'stylegan2-ffhq'")
    assert "unrelated" not in message


def test_unknown_name_without_close_match_points_to_list():
    with pytest.raises(UnknownComponentError, match=r"Unknown generator 'xyz'\. Run `essence list generators`"):
        make_registry().get("generator", "xyz")


def test_unknown_kind():
    with pytest.raises(EssenceError, match="Unknown kind 'widgets'. Use one of: generators, encoders, losses"):
        make_registry().get("widgets", "x")


def test_alias_and_defaults():
    reg = make_registry()
    assert reg.create("generator", "sg2").size == 256
    assert reg.create("generator", "stylegan2-ffhq").size == 1024
    assert reg.create("generator", "stylegan2-ffhq", size=512).size == 512
    assert reg.get("generator", "stylegan2").build_tiny().size == 8


def test_unknown_config_field_is_rejected_with_suggestion():
    with pytest.raises(ConfigError) as info:
        make_registry().create("generator", "stylegan2", sise=3)
    message = str(info.value)
    assert "unknown field 'sise' (did you mean 'size'?)" in message
    assert "essence info generator stylegan2" in message


def test_bad_config_value_is_reported_with_the_value():
    with pytest.raises(ConfigError, match=r"mode: .*'fast'.*'exact'.*\(got 'quick'\)"):
        make_registry().create("generator", "stylegan2", mode="quick")


def test_fields_show_types_defaults_and_descriptions():
    rows = {r["name"]: r for r in make_registry().get("generator", "stylegan2-ffhq").fields()}
    assert rows["size"] == {"name": "size", "type": "int", "default": 1024, "description": "Output size in pixels."}
    assert rows["mode"]["type"] == "'fast' | 'exact'"
    assert rows["weights"]["type"] == "str | None"


def test_listing_is_sorted_and_summarised():
    regs = make_registry().list("generators")
    assert [r.name for r in regs][:3] == ["stylegan2", "stylegan2-church", "stylegan2-ffhq"]
    assert regs[0].summary() == {"name": "stylegan2", "aliases": ["sg2"], "plugin": "test-plugin", "description": ""}


def test_public_getters(fresh_plugins):
    assert callable(essence.get_loss("transfer"))
    with pytest.raises(UnknownComponentError, match="Did you mean 'consistency'"):
        essence.get_loss("consistensy")
    with pytest.raises(ConfigError, match="unknown field 'weight'"):
        essence.get_loss("transfer", weight=2)
