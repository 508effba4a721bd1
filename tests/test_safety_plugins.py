"""Adversarial plugins: sys.exit and other BaseExceptions at import or in a hook, commands that would replace
built-in ones, unknown names in ESSENCE_LOAD_PLUGINS, and components that return wrong shapes, dtypes or
NaN. Each is named (the plugin, the component) and contained; essence itself keeps working."""

from __future__ import annotations

import engine_doubles
import pytest
import torch
from engine_doubles import doubles, target_file  # noqa: F401 (fixtures)
from typer.testing import CliRunner

import essence
from essence import PluginLoadWarning
from essence.cli import build_app
from essence.core import plugins


def invoke(*args, env=None):
    return CliRunner().invoke(build_app(), [str(a) for a in args], env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


GOOD = """
import essence

@essence.hookimpl
def register_losses(register):
    register("zero-loss", lambda config: (lambda ctx: ctx.shifted.sum() * 0), tiny={})
"""

AT_IMPORT = {
    "sys.exit(3)": ("import sys\nsys.exit(3)\n", "it called sys.exit(3)"),
    "sys.exit()": ("import sys\nsys.exit()\n", "it called sys.exit(None)"),
    "sys.exit('bye')": ("import sys\nsys.exit('bye')\n", "it called sys.exit('bye')"),
    "raise SystemExit": ("raise SystemExit\n", "it called sys.exit(None)"),
    "GeneratorExit": ("raise GeneratorExit('odd')\n", "it raised GeneratorExit (a BaseException): odd"),
    "a BaseException subclass": ("class Quit(BaseException):\n    pass\nraise Quit('no')\n", "it raised Quit (a BaseException): no"),
    "os._exit-free exit via exit()": ("exit(4)\n", "it called sys.exit(4)"),
}


@pytest.mark.parametrize("case", list(AT_IMPORT))
def test_a_plugin_that_exits_at_import_is_named_and_skipped(install_plugin, case):
    source, words = AT_IMPORT[case]
    install_plugin("essence-quits", "essence_quits", source)
    install_plugin("essence-zero", "essence_zero", GOOD)
    with pytest.warns(PluginLoadWarning, match="essence-quits") as record:
        found = [r.name for r in essence.list_components("loss")["loss"]]
    assert {"transfer", "zero-loss"} <= set(found)  # the others still load
    assert any(words in str(w.message) for w in record), [str(w.message) for w in record]
    assert [(e.plugin, e.stage) for e in plugins.get_host().errors] == [("essence-quits", "import")]


def test_the_cli_still_works_and_names_it(install_plugin):
    install_plugin("essence-quits", "essence_quits", "import sys\nsys.exit(3)\n")
    result = invoke("list", "losses")
    assert result.exit_code == 0, result.output
    assert "Plugin 'essence-quits' failed to load: it called sys.exit(3)" in flat(result.output)
    assert "transfer" in result.output


def test_ctrl_c_during_a_plugin_import_still_stops(install_plugin):
    install_plugin("essence-slow", "essence_slow", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        plugins.get_host()


@pytest.mark.parametrize("body", ["import sys; sys.exit(5)", "raise SystemExit('x')", "raise GeneratorExit"])
def test_a_hook_that_exits_is_named_and_skipped(install_plugin, body):
    install_plugin(
        "essence-hookexit",
        "essence_hookexit",
        f"""
        import essence
        @essence.hookimpl
        def register_losses(register):
            {body}
        """,
    )
    with pytest.warns(PluginLoadWarning, match="essence-hookexit.*register_losses"):
        assert "transfer" in [r.name for r in essence.list_components("loss")["loss"]]


COMMANDS = """
import typer
import essence

@essence.hookimpl
def register_commands(app):
    {body}
"""

REPLACEMENTS = {
    "run": ('@app.command("run")\n    def run():\n        print("HIJACKED")', "run"),
    "list (by function name)": ("@app.command()\n    def list():\n        print(\"HIJACKED\")", "list"),
    "weights (a group)": ('sub = typer.Typer()\n    sub.command("x")(lambda: print("HIJACKED"))\n    app.add_typer(sub, name="weights")', "weights"),
    "import (a group)": ('sub = typer.Typer()\n    sub.command("x")(lambda: print("HIJACKED"))\n    app.add_typer(sub, name="import")', "import"),
}


@pytest.mark.parametrize("case", list(REPLACEMENTS))
def test_a_plugin_command_never_replaces_a_built_in(install_plugin, case):
    body, name = REPLACEMENTS[case]
    extra = '\n    @app.command("hello")\n    def hello():\n        print("HELLO FROM PLUGIN")'
    install_plugin("essence-hijack", "essence_hijack", COMMANDS.format(body=body + extra))
    result = invoke(name, "--help")
    assert "HIJACKED" not in result.output
    assert result.exit_code == 0, result.output
    warned = invoke("hello")
    assert "HELLO FROM PLUGIN" in warned.output  # its own command still works
    assert f"Plugin 'essence-hijack' failed in register_commands(): it tried to replace the built-in command `essence {name}`" in flat(warned.output)


def test_an_unknown_name_in_essence_load_plugins_is_warned_by_the_cli(fresh_plugins, monkeypatch):
    monkeypatch.setenv("ESSENCE_LOAD_PLUGINS", "essence-nope,essence-typo")
    result = invoke("list", "losses")
    assert result.exit_code == 0
    text = flat(result.output)
    assert "ESSENCE_LOAD_PLUGINS names 'essence-nope', but no installed plugin has that name" in text
    assert "'essence-typo'" in text


BAD_GENERATORS = {
    "2-d images": ("img.flatten(1)", "returned shape (6, 768) for 6 input(s); the interface is (n, 3, H, W)"),
    "one channel": ("img[:, :1]", "returned shape (6, 1, 16, 16)"),
    "one image fewer": ("img[1:]", "returned shape (5, 3, 16, 16) for 6 input(s)"),
    "uint8 images": ("((img + 1) * 127).to(torch.uint8)", "returned torch.uint8 values"),
    "NaN images": ("img * float('nan')", "returned NaN or infinite values for finite inputs"),
    "inf images": ("img / 0.0", "returned NaN or infinite values"),
    "a list": ("[img]", "returned list, not a tensor"),
}


def _generator_plugin(expr: str) -> str:
    return f"""
    import torch
    import essence
    from engine_doubles import TinyGenerator, TinyGeneratorConfig

    class BadGenerator(TinyGenerator):
        def synthesize(self, ws, noise="const"):
            img = super().synthesize(ws, noise)
            return {expr}

    @essence.hookimpl
    def register_generators(register):
        register("bad-gen", BadGenerator, config=TinyGeneratorConfig, tiny={{}})
    """


@pytest.mark.parametrize("case", list(BAD_GENERATORS))
def test_a_generator_with_wrong_output_is_named_with_its_plugin(install_plugin, target_file, tmp_path, case):
    expr, words = BAD_GENERATORS[case]
    install_plugin("essence-badgen", "essence_badgen", _generator_plugin(expr))
    engine_doubles.install()
    result = invoke("run", "-g", "bad-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--heldout", 0,
                    "--sources", 6, "--init", "random", "-o", tmp_path / "run", "-q")
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "The generator 'bad-gen' (plugin 'essence-badgen')" in text and words in text, text
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", ["uint8 images", "a list", "one channel"])
def test_a_broken_generator_is_named_before_the_target_is_inverted(install_plugin, target_file, tmp_path, case):
    """The default init ('auto') inverts the target with the generator's inverter, which calls G itself."""
    install_plugin("essence-badgen", "essence_badgen", _generator_plugin(BAD_GENERATORS[case][0]))
    engine_doubles.install()
    result = invoke("run", "-g", "bad-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 2, "--heldout", 0,
                    "--sources", 2, "-o", tmp_path / "run", "-q")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "The generator 'bad-gen' (plugin 'essence-badgen')" in flat(result.output)


def test_apply_checks_the_generator_too(install_plugin, tmp_path):
    install_plugin("essence-badgen", "essence_badgen", _generator_plugin("img * float('nan')"))
    engine_doubles.install()
    direction = essence.save_direction(tmp_path / "d.safetensors", torch.zeros(4, 8), generator="bad-gen")
    result = invoke("apply", "-d", direction, "--sources", 2, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 2, result.output
    assert "The generator 'bad-gen' (plugin 'essence-badgen') returned NaN" in flat(result.output)
    assert not (tmp_path / "out" / "grid.png").exists()


BAD_ENCODERS = {
    "1-d embeddings": ("emb.flatten()", "returned shape"),
    "another embed_dim": ("emb[:, :5]", "the interface is (n, 16)"),
    "NaN embeddings": ("emb * float('nan')", "returned NaN or infinite values"),
    "int embeddings": ("emb.long()", "returned torch.int64 values"),
}


@pytest.mark.parametrize("case", list(BAD_ENCODERS))
def test_an_encoder_with_wrong_output_is_named_with_its_plugin(install_plugin, target_file, tmp_path, case):
    expr, words = BAD_ENCODERS[case]
    install_plugin(
        "essence-badenc",
        "essence_badenc",
        f"""
        import torch
        import essence
        from engine_doubles import TinyEncoder, TinyEncoderConfig

        class BadEncoder(TinyEncoder):
            def embed(self, images):
                emb = super().embed(images)
                return {expr}

        @essence.hookimpl
        def register_encoders(register):
            register("bad-enc", BadEncoder, config=TinyEncoderConfig, tiny={{}})
        """,
    )
    engine_doubles.install()
    result = invoke("run", "-g", "tiny-gen", "-e", "bad-enc", "-t", target_file, "--steps", 2, "--heldout", 0,
                    "-o", tmp_path / "run", "-q")
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert "The encoder 'bad-enc' (plugin 'essence-badenc')" in text and words in text, text
    assert "Traceback" not in result.output


def test_good_components_are_checked_once_not_every_step(doubles, target_file, tmp_path, monkeypatch):
    from essence.method import engine

    calls = []
    real = engine.check_output
    monkeypatch.setattr(engine, "check_output", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    result = invoke("run", "-g", "tiny-gen", "-e", "tiny-enc", "-t", target_file, "--steps", 20, "--heldout", 0,
                    "-o", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    assert calls.count("generator") <= 2 and calls.count("encoder") <= 3, calls  # a few renderers, not 20 steps
