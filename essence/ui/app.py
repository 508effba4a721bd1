"""The page: four tabs (Find a direction, Apply, Invert a photo, Runs) in Gradio Blocks, over the handlers
of find.py, apply.py, invert.py (with photos.py) and runs.py. The only module of essence that imports gradio.

Private by default: it binds 127.0.0.1, makes no share link, sends no analytics, keeps no run history in
the browser, serves no MCP server and fetches nothing from outside (system fonts, no CDN). Jobs that
compute (an optimisation, a grid, a comparison) run one at a time in a queue; Stop and the strength
slider do not wait behind them, so the page never blocks.
"""

from __future__ import annotations

import functools
import inspect
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from essence.core.errors import EssenceError
from essence.method.photos import IMAGE_SUFFIXES
from essence.method.runconfig import DEFAULT_PRESET
from essence.ui import apply as apply_tab
from essence.ui import require_gradio
from essence.ui import find as find_tab
from essence.ui import invert as invert_tab
from essence.ui import photos as photos_tab
from essence.ui import runs as runs_tab

#: Seconds between two looks at a running optimisation.
POLL = 0.5
#: The queue all computing jobs share: one at a time.
JOBS = "essence-job"
#: The slider's own queue: quick renders, never behind an optimisation.
RENDER = "essence-render"
#: The generator the direction was made for (a choice of the Apply tab's menu).
OWN_GENERATOR = "(the direction's own)"
LOSS_SIZE = (560, 320)
#: What the photo uploads accept: the suffixes `essence invert` reads as photos.
PHOTO_SUFFIXES = IMAGE_SUFFIXES
IMAGE_BUTTONS = ["download", "fullscreen"]  # no "share": nothing leaves the machine


class UiState:
    """What the page's handlers share: the runs folder, the generator cache, the running job, a scratch
    folder for downloads (copies: the user's files are never served or changed in place)."""

    def __init__(self, runs: str | Path, scratch: str | Path | None = None) -> None:
        self.runs = Path(runs)
        self.own_scratch = scratch is None
        self.scratch = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="essence-ui-"))
        self.cache = apply_tab.GeneratorCache()
        self.inversions = photos_tab.InversionCache()
        self.job: find_tab.FindJob | None = None
        self._lock = threading.Lock()
        self._downloads = 0

    def begin(self, job: find_tab.FindJob) -> find_tab.FindJob:
        with self._lock:
            if self.job is not None and not self.job.wait(0):
                raise EssenceError("An optimisation is already running: wait for it or press Stop.")
            self.job = job
        return job.start()

    def stop(self) -> str:
        job = self.job
        if job is None or job.wait(0):
            return "Nothing is running."
        job.stop()
        return "Stopping after this step; the best direction so far is kept."

    def close(self) -> None:
        """Stop a running optimisation (its best direction is written), then remove the scratch folder if
        this state made it (it holds only copies)."""
        if self.job is not None and not self.job.wait(0):
            self.job.stop()
            self.job.wait()
        if self.own_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def download_folder(self) -> Path:
        """A new folder for one set of downloads (gradio copies what it serves from here)."""
        with self._lock:
            self._downloads += 1
            folder = self.scratch / f"{self._downloads:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder


# -- errors as messages ----------------------------------------------------------------------------


def _message(exc: Exception) -> Exception:
    import gradio as gr

    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, EssenceError):
        return gr.Error(str(exc), print_exception=False)
    traceback.print_exc(file=sys.stderr)
    return gr.Error(
        f"Unexpected {type(exc).__name__}: {exc}. The server's console has the details.", print_exception=False
    )


def shown(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A handler whose errors reach the page as one message (EssenceError as it is), never a traceback."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _message(exc) from None

        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _message(exc) from None

    return plain


# -- the page --------------------------------------------------------------------------------------


def build_blocks(state: UiState) -> Any:
    """The Blocks of the page, wired to ``state``."""
    require_gradio()
    import gradio as gr

    menus = find_tab.choices()
    bundled = find_tab.bundled_targets()
    aligners, inverters = photos_tab.aligner_choices(), photos_tab.inverter_choices()

    def run_choices() -> tuple[list[str], list[str]]:
        listed = runs_tab.list_runs(state.runs)
        return [r.name for r in listed], [r.name for r in listed if r.has_direction]

    all_runs, direction_runs = run_choices()

    with gr.Blocks(title="essence", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(
            "# essence\nFind one direction in W+ that carries a target image's essence to any source "
            f"(TargetCLIP). Runs are written to `{state.runs}`."
        )
        with gr.Tab("Find a direction"):
            with gr.Row():
                with gr.Column(scale=1):
                    target = gr.Image(
                        label="Target",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        format="png",
                        height=220,
                        elem_id="target",
                        buttons=IMAGE_BUTTONS,
                    )
                    bundled_pick = gr.Dropdown(
                        ["", *bundled], value="", label="or a bundled target (the toy world)", elem_id="bundled"
                    )
                with gr.Column(scale=1):
                    generator = gr.Dropdown(menus.generators, value=menus.generator, label="Generator")
                    encoder = gr.Dropdown(menus.encoders, value=menus.encoder, label="Encoder")
                    preset = gr.Dropdown(
                        list(menus.presets),
                        value=DEFAULT_PRESET,
                        label="Preset",
                        info="essence-in (default): in-domain targets; essence-ood, paper-ood: drawings, paintings, ...; "
                        "paper: the paper's settings",
                        elem_id="preset",
                    )
                with gr.Column(scale=1):
                    first_steps, first_sources = find_tab.preset_fields(DEFAULT_PRESET)
                    steps = gr.Number(first_steps, precision=0, minimum=1, label="Steps", elem_id="steps")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                    restarts = gr.Number(1, precision=0, minimum=1, label="Restarts")
                    sources = gr.Number(first_sources, precision=0, minimum=2, label="Sources", elem_id="find-sources")
                    init_target = gr.Checkbox(
                        False,
                        label="Start at the target's inversion (in-domain targets)",
                        info="Asking the generator for its inverter...",
                        interactive=False,
                        elem_id="init-target",
                    )
            with gr.Row():
                find_button = gr.Button("Find the direction", variant="primary", elem_id="find")
                stop_button = gr.Button("Stop (keeps the best direction)", variant="stop", elem_id="stop")
            status = gr.Markdown(
                "Upload a target or pick a bundled one, then press *Find the direction*.",
                label="Status",
                elem_id="find-status",
            )
            with gr.Row():
                loss = gr.Image(label="Loss", format="png", interactive=False, buttons=IMAGE_BUTTONS, elem_id="loss")
                preview = gr.Image(
                    label=f"The current direction on the first {find_tab.PREVIEW_SOURCES} sources",
                    format="png",
                    interactive=False,
                    buttons=IMAGE_BUTTONS,
                    elem_id="preview",
                )
            found_direction = gr.DownloadButton("Download the direction", visible=False, elem_id="find-download")

        with gr.Tab("Apply"):
            with gr.Row():
                with gr.Column():
                    run_pick = gr.Dropdown(direction_runs, value=None, label="Direction: a run", elem_id="apply-run")
                    direction_file = gr.File(
                        label="or a direction file (.safetensors, TargetCLIP .npy): used instead",
                        file_types=list(apply_tab.DIRECTION_SUFFIXES),
                        type="filepath",
                    )
                    apply_generator = gr.Dropdown(
                        [OWN_GENERATOR, *menus.generators], value=OWN_GENERATOR, label="Generator"
                    )
                with gr.Column():
                    source_kind = gr.Radio(
                        list(apply_tab.SOURCE_KINDS), value="random", label="Sources", elem_id="source-kind"
                    )
                    with gr.Row(visible=True) as random_fields:
                        count = gr.Number(6, precision=0, minimum=1, maximum=64, label="Count")
                        apply_seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                        truncation = gr.Number(0.7, minimum=0, maximum=2, label="Truncation")
                    latents = gr.File(
                        label="Latent file (N, num_ws, w_dim)",
                        type="filepath",
                        file_types=[".pt", ".pth", ".npy", ".safetensors"],
                        visible=False,
                    )
                    with gr.Group(visible=False) as photo_fields:
                        photo_files = gr.File(
                            label="Photos: aligned to the generator's crop and inverted (kept for the next Apply)",
                            file_count="multiple",
                            file_types=list(PHOTO_SUFFIXES),
                            type="filepath",
                            elem_id="source-photos",
                        )
                        with gr.Row():
                            apply_aligner = gr.Dropdown(aligners, value=photos_tab.GENERATORS_OWN, label="Aligner")
                            apply_inverter = gr.Dropdown(inverters, value=photos_tab.GENERATORS_OWN, label="Inverter")
                    alphas = gr.Textbox("0,0.5,1,1.3", label="Strengths of the grid (comma-separated)")
            apply_button = gr.Button("Apply", variant="primary", elem_id="apply")
            strength = gr.Slider(
                -1.0, 2.0, value=1.0, step=0.05, label="Strength (alpha): G(w + alpha b)", elem_id="strength"
            )
            with gr.Row():
                source_view = gr.Gallery(
                    label="Sources", columns=6, format="png", height=180, elem_id="sources", buttons=IMAGE_BUTTONS
                )
                result_view = gr.Gallery(
                    label="Results at this strength",
                    columns=6,
                    format="png",
                    height=180,
                    elem_id="results",
                    buttons=IMAGE_BUTTONS,
                )
            photo_pairs = gr.Gallery(
                label="The photos, aligned, beside their reconstructions G(w): what the inversion kept",
                columns=8,
                object_fit="contain",
                format="png",
                height=180,
                visible=False,
                elem_id="photo-pairs",
                buttons=IMAGE_BUTTONS,
            )
            source_notes = gr.Markdown("", elem_id="source-notes")
            grid = gr.Image(
                label="Grid: rows sources, columns strengths",
                format="png",
                interactive=False,
                buttons=IMAGE_BUTTONS,
                elem_id="grid",
            )
            with gr.Row():
                grid_download = gr.DownloadButton("Grid", visible=False, elem_id="grid-download")
                images_download = gr.DownloadButton("Images (zip)", visible=False, elem_id="images-download")
                direction_download = gr.DownloadButton("Direction", visible=False, elem_id="direction-download")
            applied = gr.State(None)

        with gr.Tab("Invert a photo"):
            with gr.Row():
                with gr.Column():
                    invert_files = gr.File(
                        label="Photos",
                        file_count="multiple",
                        file_types=list(PHOTO_SUFFIXES),
                        type="filepath",
                        elem_id="invert-photos",
                    )
                with gr.Column():
                    invert_generator = gr.Dropdown(menus.generators, value=menus.generator, label="Generator")
                    invert_aligner = gr.Dropdown(aligners, value=photos_tab.GENERATORS_OWN, label="Aligner")
                    invert_inverter = gr.Dropdown(inverters, value=photos_tab.GENERATORS_OWN, label="Inverter")
            invert_button = gr.Button("Invert", variant="primary", elem_id="invert")
            invert_status = gr.Markdown(
                "Upload photos, then press *Invert*: the latents are the file `essence invert` writes.",
                elem_id="invert-status",
            )
            invert_pairs = gr.Gallery(
                label="Aligned crops beside their reconstructions G(w)",
                columns=8,
                object_fit="contain",
                format="png",
                height=180,
                elem_id="invert-pairs",
                buttons=IMAGE_BUTTONS,
            )
            invert_sheet = gr.Image(
                label="The sheet: photo | aligned | G(w)",
                format="png",
                interactive=False,
                buttons=IMAGE_BUTTONS,
                elem_id="invert-sheet",
            )
            with gr.Row():
                latents_download = gr.DownloadButton(
                    "Latents (.safetensors)", visible=False, elem_id="latents-download"
                )
                record_download = gr.DownloadButton("Record (.json)", visible=False, elem_id="record-download")

        with gr.Tab("Runs"):
            refresh = gr.Button("Refresh", elem_id="refresh")
            table = gr.Dataframe(headers=runs_tab.COLUMNS, interactive=False, wrap=True, elem_id="runs-table")
            detail_pick = gr.Dropdown(all_runs, value=None, label="Show a run", elem_id="runs-pick")
            with gr.Row():
                sheet = gr.Image(label="sheet.png", format="png", interactive=False, buttons=IMAGE_BUTTONS)
                heldout_sheet = gr.Image(
                    label="heldout_sheet.png", format="png", interactive=False, buttons=IMAGE_BUTTONS
                )
            with gr.Row():
                run_loss = gr.Image(label="loss.png", format="png", interactive=False, buttons=IMAGE_BUTTONS)
                metrics = gr.JSON(label="metrics.json")
            compare_pick = gr.Dropdown(
                all_runs, value=[], multiselect=True, label="Compare two or more runs", elem_id="compare-pick"
            )
            compare_button = gr.Button("Compare", elem_id="compare")
            figure = gr.Image(
                label="Comparison (the `essence compare` figure)",
                format="png",
                interactive=False,
                buttons=IMAGE_BUTTONS,
                elem_id="figure",
            )

        # -- handlers -------------------------------------------------------------------------------
        @shown
        def refresh_lists(selected_run: str | None = None) -> tuple[Any, ...]:
            names, with_direction = run_choices()
            rows = [r.row() for r in runs_tab.list_runs(state.runs)]
            value = selected_run if selected_run in with_direction else (with_direction[0] if with_direction else None)
            return (
                gr.update(choices=with_direction, value=value),
                gr.update(choices=names),
                gr.update(choices=names),
                rows,
            )

        lists = [run_pick, detail_pick, compare_pick, table]

        @shown
        def pick_bundled(name: str) -> Any:
            return str(bundled[name]) if name in bundled else gr.skip()

        @shown
        def inverter_state(generator_name, preset_name):
            inverter, why = photos_tab.generator_inverter(generator_name, state.cache)
            if inverter is None:
                return gr.update(value=False, interactive=False, info=f"Not available: {why}")
            return gr.update(
                value=find_tab.preset_inverts(preset_name),
                interactive=True,
                info=f"b starts at the target's latent ({inverter}), not at random.",
            )

        @shown
        def fill_preset(preset_name, generator_name):
            n_steps, n_sources = find_tab.preset_fields(preset_name)
            return n_steps, n_sources, inverter_state(generator_name, preset_name)

        @shown
        def find(
            target_path, generator_name, encoder_name, preset_name, n_steps, seed_value, n_restarts, n_sources, at_target
        ):
            config = find_tab.find_config(
                target_path,
                generator=generator_name,
                encoder=encoder_name,
                preset=preset_name,
                steps=n_steps,
                seed=seed_value,
                restarts=n_restarts,
                sources=n_sources,
                runs=state.runs,
                init_target=bool(at_target),
                cache=state.cache,
            )
            job = state.begin(find_tab.FindJob(config))
            plotted, shown_preview = -1, None
            try:
                while True:
                    finished = job.wait(POLL)
                    v = job.view()
                    length = len(v.series.get("loss", []))
                    plot = gr.skip()  # unchanged pictures are not sent again, except at the end
                    if length and (length != plotted or finished):
                        plot = find_loss_plot(v)
                        plotted = length
                    picture = gr.skip() if v.preview is shown_preview and not finished else v.preview
                    shown_preview = v.preview
                    download = gr.skip()
                    if finished and v.outcome is not None:
                        download = gr.update(
                            value=copy_direction(v.outcome.out),
                            visible=True,
                            label=f"Download the direction ({v.out.name})",
                        )
                    yield v.status_line(), plot, picture, download
                    if finished:
                        break
                if v.state == "failed":
                    raise EssenceError(v.message)
            finally:
                if not job.wait(0):  # the page went away: stop as Ctrl-C does, keeping the best direction
                    job.stop()

        def find_loss_plot(v: find_tab.FindView) -> Any:
            from essence.method.figures import loss_plot

            return loss_plot(v.series, size=LOSS_SIZE, title="loss (weighted sum) and its terms")

        def copy_direction(run: Path) -> str:
            return str(
                apply_tab.copy_file(run / "direction.safetensors", state.download_folder() / f"{run.name}.safetensors")
            )

        def show_fields(kind):
            return (
                gr.update(visible=kind == "random"),
                gr.update(visible=kind == "latent file"),
                gr.update(visible=kind == "photos"),
            )

        @shown
        def apply(
            run_name,
            upload,
            generator_name,
            kind,
            n,
            seed_value,
            psi,
            latent_file,
            alphas_text,
            alpha,
            photos=None,
            aligner=None,
            inverter=None,
        ):
            from essence.workflows.apply import parse_alphas

            direction = upload or (str(runs_tab.resolve_run(state.runs, run_name)) if run_name else None)
            result = apply_tab.load_applied(
                state.cache,
                direction,
                generator=None if generator_name == OWN_GENERATOR else generator_name,
                sources=kind,
                count=n,
                seed=seed_value,
                truncation=psi,
                latents=latent_file,
                photos=photos,
                aligner=aligner,
                inverter=inverter,
                inversions=state.inversions,
            )
            grid_image, files = apply_tab.export(
                state.cache, result, parse_alphas(alphas_text or ""), state.download_folder()
            )
            sources_view = apply_tab.at_strength(state.cache, result, 0.0)
            pairs = apply_tab.photo_view(state.cache, result)
            notes = "  \n".join(f"- {line}" for line in result.notes or [])
            return (
                result,
                sources_view,
                apply_tab.at_strength(state.cache, result, alpha),
                grid_image,
                gr.update(value=str(files.grid), visible=True),
                gr.update(value=str(files.images), visible=True),
                gr.update(value=str(files.direction), visible=True),
                gr.update(value=pairs, visible=bool(pairs)),
                notes,
            )

        @shown
        def invert(photos, generator_name, aligner, inverter):
            folder = state.download_folder()
            done = invert_tab.invert_upload(
                state.cache,
                state.inversions,
                photos,
                folder,
                generator=generator_name,
                aligner=aligner,
                inverter=inverter,
            )
            return (
                done.summary,
                done.pairs,
                str(done.sheet),
                gr.update(value=str(done.latents), visible=True, label=f"Latents ({done.latents.name})"),
                gr.update(value=str(done.record_path), visible=True),
            )

        @shown
        def move(result, alpha):
            if result is None:
                return gr.skip()
            return apply_tab.at_strength(state.cache, result, alpha)

        @shown
        def show_run(name):
            if not name:
                return None, None, None, None
            d = runs_tab.run_details(state.runs, name)
            return d.sheet, d.heldout_sheet, d.loss, d.metrics

        @shown
        def compare(names):
            return runs_tab.compare_runs(state.runs, list(names or []), state.cache)

        # -- events ---------------------------------------------------------------------------------
        blocks.load(refresh_lists, None, lists, api_name="refresh")
        blocks.load(inverter_state, [generator, preset], init_target, api_visibility="private")
        generator.change(inverter_state, [generator, preset], init_target, api_name="generator_inverter")
        preset.change(fill_preset, [preset, generator], [steps, sources, init_target], api_name="preset_fields")
        refresh.click(refresh_lists, None, lists, api_visibility="private")
        bundled_pick.change(pick_bundled, bundled_pick, target, api_name="bundled_target")
        find_event = find_button.click(
            find,
            [target, generator, encoder, preset, steps, seed, restarts, sources, init_target],
            [status, loss, preview, found_direction],
            api_name="find",
            concurrency_id=JOBS,
            concurrency_limit=1,
        )
        find_event.then(refresh_lists, None, lists, api_visibility="private")
        stop_button.click(lambda: state.stop(), None, status, api_name="stop", concurrency_limit=None, queue=False)
        apply_button.click(
            apply,
            [
                run_pick,
                direction_file,
                apply_generator,
                source_kind,
                count,
                apply_seed,
                truncation,
                latents,
                alphas,
                strength,
                photo_files,
                apply_aligner,
                apply_inverter,
            ],
            [
                applied,
                source_view,
                result_view,
                grid,
                grid_download,
                images_download,
                direction_download,
                photo_pairs,
                source_notes,
            ],
            api_name="apply",
            concurrency_id=JOBS,
            concurrency_limit=1,
        )
        strength.change(
            move,
            [applied, strength],
            result_view,
            api_name="strength",
            trigger_mode="always_last",
            concurrency_id=RENDER,
            concurrency_limit=1,
            show_progress="hidden",
        )
        source_kind.change(show_fields, source_kind, [random_fields, latents, photo_fields], api_visibility="private")
        invert_button.click(
            invert,
            [invert_files, invert_generator, invert_aligner, invert_inverter],
            [invert_status, invert_pairs, invert_sheet, latents_download, record_download],
            api_name="invert",
            concurrency_id=JOBS,
            concurrency_limit=1,
        )
        detail_pick.change(show_run, detail_pick, [sheet, heldout_sheet, run_loss, metrics], api_name="show_run")
        compare_button.click(
            compare, compare_pick, figure, api_name="compare", concurrency_id=JOBS, concurrency_limit=1
        )
    return blocks


def theme() -> Any:
    """Gradio's default look with system fonts: the default theme's fonts would be fetched from the web."""
    import gradio as gr

    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "SFMono-Regular", "monospace"]
    )


def launch(
    state: UiState, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False
) -> Any:
    """Serve the page; with ``block`` until Ctrl-C, which stops a running optimisation as ``essence run``'s
    Ctrl-C does (the best direction is written) before the server goes."""
    blocks = build_blocks(state)
    blocks.queue(default_concurrency_limit=1)
    try:
        blocks.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            show_error=False,
            quiet=quiet,
            footer_links=["api", "settings"],
            run_history=False,
            mcp_server=False,
            enable_monitoring=False,
            max_file_size="200mb",
            ssr_mode=False,
            pwa=False,
            theme=theme(),
            allowed_paths=[str(find_tab.BUNDLED_TARGETS)],  # the bundled targets, shown when picked
        )
    except OSError as exc:
        raise EssenceError(f"Cannot serve on {host}:{port}: {exc}. Choose another --port.") from None
    if not block:
        return blocks
    try:
        while blocks.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        if state.job is not None and not state.job.wait(0):
            print("Stopping the optimisation after this step; the best direction is written...", file=sys.stderr)
    finally:
        state.close()
        blocks.close()
    return blocks
