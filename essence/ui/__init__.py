"""``essence ui``: a local web page to find, apply and compare directions (Gradio Blocks, the ``[ui]`` extra).

The work is done by plain functions that call the method and the workflows, one module per tab:
``find.py`` (one ``essence run`` in a thread, with a live view and Stop), ``apply.py`` (a direction on
sources at any strength, the generator kept built between calls), ``runs.py`` (the run folders, their
pictures and the comparison figure). ``app.py`` lays them out in Gradio and is the only module that
imports gradio; nothing here imports torch or gradio when imported.
"""

from __future__ import annotations

#: What ``essence ui`` needs; ``require_gradio`` says how to install it when it is missing or too old.
GRADIO_RANGE = (6, 7)


def private_environment() -> None:
    """Before gradio is imported: no analytics and no version check (both would open sockets)."""
    import os

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def require_gradio() -> None:
    """Raise MissingExtraError unless gradio is importable, EssenceError when its major version is not 6."""
    from essence.core.errors import EssenceError, MissingExtraError

    private_environment()
    try:
        import gradio
    except ImportError:
        raise MissingExtraError("The web UI (essence ui)", "ui", ["gradio"]) from None
    version = str(getattr(gradio, "__version__", "0"))
    major = version.split(".")[0]
    if not (major.isdigit() and GRADIO_RANGE[0] <= int(major) < GRADIO_RANGE[1]):
        raise EssenceError(
            f"essence ui needs gradio {GRADIO_RANGE[0]}.x, found {version}: "
            'pip install "essence-transfer[ui]" installs a matching one.'
        )
