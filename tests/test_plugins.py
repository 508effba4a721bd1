"""Plugin loading: entry points, selection, isolation of broken plugins, duplicates, tracing."""

from __future__ import annotations

import pytest

import essence
from essence import DuplicateNameError, PluginLoadWarning
from essence.core import plugins

GOOD = """
import essence

@essence.hookimpl
def register_losses(register):
    def zero(config):
        '''Always zero.'''
        return lambda ctx: ctx.shifted.sum() * 0
    register("zero-loss", zero, aliases=["nothing"], tiny={})
"""


def names(kind: str) -> list[str]:
    return [r.name for r in essence.list_components(kind)[kind]]


def test_builtins_register_through_hooks(fresh_plugins):
    host = plugins.get_host()
    assert "essence.plugins.losses.paper" in host.plugins
    assert host.plugins["essence.plugins.losses.paper"].builtin
    assert {"transfer", "consistency"} <= set(names("loss"))
    assert essence.get_registry().get("loss", "transfer").plugin == "essence.plugins.losses.paper"


def test_entry_point_plugin_is_discovered(install_plugin):
    install_plugin("essence-zero", "essence_zero", GOOD, version="2.5")
    assert "zero-loss" in names("loss")
    reg = essence.get_registry().get("loss", "nothing")  # by alias
    assert reg.name == "zero-loss" and reg.plugin == "essence-zero"
    assert reg.description == "Always zero."
    info = plugins.get_host().plugins["essence-zero"]
    assert info.version == "2.5" and not info.builtin and info.hooks == ["register_losses"]


def test_load_plugins_empty_disables_third_party_only(install_plugin, monkeypatch):
    install_plugin("essence-zero", "essence_zero", GOOD)
    monkeypatch.setenv("ESSENCE_LOAD_PLUGINS", "")
    plugins.reset()
    assert "zero-loss" not in names("loss")
    assert "transfer" in names("loss")


def test_load_plugins_list_selects(install_plugin, monkeypatch):
    install_plugin("essence-zero", "essence_zero", GOOD)
    install_plugin("essence-other", "essence_other", GOOD.replace("zero-loss", "other").replace('"nothing"', '"x"'))
    monkeypatch.setenv("ESSENCE_LOAD_PLUGINS", "essence-other")
    plugins.reset()
    assert "other" in names("loss") and "zero-loss" not in names("loss")


def test_load_plugins_unknown_name_warns(fresh_plugins, monkeypatch):
    monkeypatch.setenv("ESSENCE_LOAD_PLUGINS", "essence-nope")
    with pytest.warns(PluginLoadWarning, match="essence-nope"):
        plugins.get_host()


def test_broken_plugin_warns_and_the_rest_works(install_plugin):
    install_plugin("essence-broken", "essence_broken", "import no_such_module_anywhere\n")
    install_plugin("essence-zero", "essence_zero", GOOD)
    with pytest.warns(PluginLoadWarning, match="essence-broken.*No module named 'no_such_module_anywhere'"):
        found = names("loss")
    assert {"transfer", "zero-loss"} <= set(found)
    errors = plugins.get_host().errors
    assert [(e.plugin, e.stage) for e in errors] == [("essence-broken", "import")]


def test_plugin_whose_hook_raises_is_reported(install_plugin):
    install_plugin(
        "essence-raises",
        "essence_raises",
        """
        import essence
        @essence.hookimpl
        def register_losses(register):
            raise RuntimeError("boom")
        """,
    )
    with pytest.warns(PluginLoadWarning, match="essence-raises.*register_losses.*boom"):
        assert "transfer" in names("loss")


def test_invalid_hookimpl_is_reported(install_plugin):
    install_plugin(
        "essence-typo",
        "essence_typo",
        """
        import essence
        @essence.hookimpl
        def register_lossez(register):
            pass
        """,
    )
    with pytest.warns(PluginLoadWarning, match="essence-typo"):
        assert "transfer" in names("loss")


def test_duplicate_name_names_both_plugins(install_plugin):
    install_plugin("essence-zero", "essence_zero", GOOD)
    install_plugin("essence-copy", "essence_copy", GOOD.replace('aliases=["nothing"]', "aliases=[]"))
    with pytest.raises(DuplicateNameError, match="'zero-loss'.*'essence-zero'.*'essence-copy'"):
        essence.get_registry()


def test_duplicate_of_builtin_is_an_error(install_plugin):
    install_plugin("essence-evil", "essence_evil", GOOD.replace("zero-loss", "transfer"))
    with pytest.raises(DuplicateNameError, match="essence.plugins.losses.paper.*essence-evil"):
        essence.get_registry()


def test_hookimpl_may_take_fewer_arguments(install_plugin):
    install_plugin(
        "essence-noargs",
        "essence_noargs",
        """
        import essence
        CALLED = []
        @essence.hookimpl
        def register_commands():
            CALLED.append(True)
        """,
    )
    from essence.cli import build_app

    build_app()
    import essence_noargs

    assert essence_noargs.CALLED == [True]


def test_trace_prints_hook_calls(install_plugin, monkeypatch, capsys):
    install_plugin("essence-zero", "essence_zero", GOOD)
    monkeypatch.setenv("ESSENCE_TRACE_PLUGINS", "1")
    plugins.reset()
    essence.get_registry()
    err = capsys.readouterr().err
    assert "register_losses() in essence.plugins.losses.paper" in err
    assert "register_losses() in essence-zero" in err


def test_no_plugin_work_at_import(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, essence; from essence.core import plugins; "
        "assert plugins._host is None; assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
