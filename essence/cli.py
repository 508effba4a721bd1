"""The ``essence`` command line, built by :func:`build_app` (no work at import time).

User mistakes (EssenceError) print one line and exit with code 2, without a traceback.
"""

from __future__ import annotations

import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from essence.core.errors import EssenceError
from essence.version import __version__

HELP = """Image-based, CLIP-guided essence transfer (TargetCLIP) for StyleGAN2.

Find one direction in W+ that carries a target image's essence to any source face.
"""


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_error(exc: BaseException) -> None:
    from rich.markup import escape

    # escaped: a message's own brackets (pip install "essence-transfer[photos]") are text, not markup
    _stderr_console().print(f"[bold red]Error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from rich.markup import escape

    _stderr_console().print(f"[yellow]Warning:[/] {escape(str(message))}", soft_wrap=True)


class EssenceGroup(TyperGroup):
    """Turns EssenceError into a one-line message and exit code 2, and warnings into one line."""

    def invoke(self, ctx: Any) -> Any:
        from essence.core.plugins import get_host

        host = get_host()
        for error in host.errors:
            where = "failed to load" if error.stage in ("import", "register") else f"failed in {error.stage}()"
            _show_warning(f"Plugin {error.plugin!r} {where}: {error.error}. Other plugins still work.", None, "", 0)
        for note in host.notes:
            _show_warning(note, None, "", 0)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except EssenceError as exc:
                print_error(exc)
                raise typer.Exit(exc.exit_code) from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"essence {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The CLI: the built-in commands, then every plugin's ``register_commands(app)``."""
    app = typer.Typer(
        cls=EssenceGroup,
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Image-based, CLIP-guided essence transfer."""

    from essence.commands.apply import apply_command, sweep_command
    from essence.commands.batch import batch_command
    from essence.commands.blend import blend_command
    from essence.commands.compare import compare_command
    from essence.commands.components import doctor_command, info_command, list_command, plugins_command
    from essence.commands.evaluate import eval_command
    from essence.commands.interop import import_app
    from essence.commands.invert import align_command, invert_command
    from essence.commands.run import run_command
    from essence.commands.ui import ui_command
    from essence.commands.weights import weights_app

    app.command("list")(list_command)
    app.command("info")(info_command)
    app.command("plugins")(plugins_command)
    app.command("doctor")(doctor_command)

    app.command("run")(run_command)
    app.command("batch")(batch_command)
    app.command("apply")(apply_command)
    app.command("sweep")(sweep_command)
    app.command("align")(align_command)
    app.command("invert")(invert_command)
    app.add_typer(import_app(), name="import")
    app.command("blend")(blend_command)
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.add_typer(weights_app(), name="weights")
    app.command("ui")(ui_command)

    from essence.core.errors import PluginLoadWarning
    from essence.core.plugins import get_host

    host = get_host()
    builtin = _command_names(app)
    with warnings.catch_warnings():
        # The group reports load errors itself when a command runs.
        warnings.simplefilter("ignore", PluginLoadWarning)
        for plugin in [impl.plugin_name for impl in host.pm.hook.register_commands.get_hookimpls()]:
            before = (len(app.registered_commands), len(app.registered_groups))
            host.call_each("register_commands", lambda name: {"app": app}, only=plugin)
            _refuse_replacements(app, before, builtin, plugin, host)
    return app


def _command_names(app: typer.Typer) -> set[str]:
    names = {c.name or (c.callback.__name__.replace("_", "-") if c.callback else "") for c in app.registered_commands}
    return names | {g.name or "" for g in app.registered_groups}


def _refuse_replacements(app: typer.Typer, before: tuple[int, int], builtin: set[str], plugin: str, host: Any) -> None:
    """Drop the commands ``plugin`` just added under a built-in command's name (it would replace it), with
    a warning naming both; its other commands stay."""
    from essence.core.plugins import PluginError

    n_commands, n_groups = before
    for registered, start in ((app.registered_commands, n_commands), (app.registered_groups, n_groups)):
        for info in list(registered[start:]):
            name = info.name or (info.callback.__name__.replace("_", "-") if getattr(info, "callback", None) else "")
            if name in builtin:
                registered.remove(info)
                message = (
                    f"it tried to replace the built-in command `essence {name}`; the plugin's command was left out "
                    "(give it another name)"
                )
                error = PluginError(plugin, "register_commands", message)
                if error not in host.errors:  # build_app may run more than once on one host
                    host.errors.append(error)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    import os

    if os.environ.get("ESSENCE_KEEP_FREED_MEMORY", "1") != "0":
        # The CLI is one short-lived process: reusing freed memory makes CPU rendering ~1.5x faster.
        from essence.core.perf import keep_freed_memory

        keep_freed_memory()
    try:
        app = build_app()
    except EssenceError as exc:
        print_error(exc)
        return exc.exit_code
    try:
        app(args=argv, prog_name="essence")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


__all__ = ["build_app", "main"]
