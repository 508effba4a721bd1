"""`essence ui`'s handlers, called directly on the shipped toy models (no gradio needed except where said)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import essence
from essence.cli import build_app
from essence.core.images import load_image, to_pil
from essence.core.registry import get_registry
from essence.method.figures import comparison_figure, fit_tile, sheet_tile
from essence.method.runconfig import list_presets
from essence.method.runner import PHOTO_FILES, RUN_FILES
from essence.ui import apply as apply_tab
from essence.ui import find as find_tab
from essence.ui import runs as runs_tab
from ui_support import SKETCH, TARGET, toy_run
from ui_support import sprite_photos as make_sprite_photos


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder: two runs on the same sources (seed 0), one on other sources (seed 5), one nested."""
    root = tmp_path_factory.mktemp("runs")
    toy_run(root / "a", seed=0)
    toy_run(root / "b", seed=0, target=SKETCH)
    toy_run(root / "nested" / "c", seed=5)
    return root


@pytest.fixture(scope="module")
def cache():
    return apply_tab.GeneratorCache()


# -- the command -----------------------------------------------------------------------------------


def test_without_gradio_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    result = CliRunner().invoke(build_app(), ["ui"])
    assert result.exit_code == 2
    assert 'pip install "essence-transfer[ui]"' in result.output and "Traceback" not in result.output


def test_a_gradio_of_another_major_version_is_refused(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "gradio", types.SimpleNamespace(__version__="4.44.1"))
    with pytest.raises(essence.EssenceError, match=r"needs gradio 6\.x, found 4\.44\.1"):
        from essence.ui import require_gradio

        require_gradio()


def test_the_cli_and_the_ui_handlers_import_neither_gradio_nor_torch():
    code = (
        "import sys, essence.cli, essence.ui.find, essence.ui.apply, essence.ui.runs, essence.ui.invert, essence.ui.photos; "
        "essence.cli.build_app(); "
        "print(sorted(m for m in ('torch', 'gradio', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ui_help_shows_the_options():
    result = CliRunner().invoke(build_app(), ["ui", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--runs", "127.0.0.1", "7860"):
        assert option in result.output


# -- Find a direction ------------------------------------------------------------------------------


def test_menus_offer_the_registry_and_default_to_the_toy_models():
    menus = find_tab.choices()
    assert {"toy-sprites", "stylegan2-ffhq"} <= set(menus.generators)
    assert {"toy-clip", "clip-vitb32"} <= set(menus.encoders)
    assert (menus.generator, menus.encoder) == ("toy-sprites", "toy-clip")
    assert set(menus.presets) == set(list_presets())
    assert {"in-domain", "out-of-domain"} <= set(find_tab.bundled_targets())


def test_menus_list_third_party_components(install_plugin):
    install_plugin(
        "essence-ui-probe",
        "essence_ui_probe",
        """
        import essence

        @essence.hookimpl
        def register_encoders(register):
            register("ui-probe", lambda config: None)
    """,
    )
    assert "ui-probe" in find_tab.choices().encoders


FIELDS = dict(generator="toy-sprites", encoder="toy-clip", preset="paper", steps=5, seed=0, restarts=1, sources=6)


def test_find_config_puts_the_run_under_the_runs_folder(tmp_path):
    config = find_tab.find_config(str(TARGET), runs=tmp_path, **FIELDS)
    assert config.steps == 5 and config.generator.name == "toy-sprites" and config.sources.count == 6
    out = config.out
    assert out.startswith(str(tmp_path / "in-domain-"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"target": None}, "No target image"),
        ({"steps": 2.5}, "Steps: give a whole number"),
        ({"restarts": 0}, "Restarts: give a whole number of at least 1"),
        ({"preset": "nope"}, "preset"),
    ],
)
def test_find_config_refuses_bad_fields_with_a_message(tmp_path, change, message):
    fields = {"target": str(TARGET), **FIELDS, **change}
    target = fields.pop("target")
    with pytest.raises(essence.EssenceError, match=message):
        find_tab.find_config(target, runs=tmp_path, **fields)


def test_an_unknown_component_is_reported_by_the_job_without_a_traceback(tmp_path, capsys):
    job = find_tab.FindJob(find_tab.find_config(str(TARGET), runs=tmp_path, **{**FIELDS, "encoder": "no-such"}))
    assert job.start().wait(60)
    view = job.view()
    assert view.state == "failed" and view.status_line().startswith("Failed: Unknown encoder 'no-such'")
    assert "Traceback" not in capsys.readouterr().err  # a user mistake, not a crash


def test_a_job_writes_what_essence_run_writes_and_shows_it_live(tmp_path):
    config = find_tab.find_config(str(TARGET), runs=tmp_path, **{**FIELDS, "steps": 6})
    job = find_tab.FindJob(config, preview_seconds=0.0).start()
    seen = []
    while not job.wait(0.05):
        seen.append(job.view())
    view = job.view()
    assert view.state == "completed", view.message
    assert (view.step, view.total, len(view.series["loss"])) == (6, 6, 6)
    assert view.preview is not None and view.preview.width > 6 * find_tab.PREVIEW_TILE  # target column + 6 sources
    many = find_tab.find_config(str(TARGET), runs=tmp_path, **{**FIELDS, "steps": 2, "sources": 32})
    big = find_tab.FindJob(many, preview_seconds=0.0).start()
    assert big.wait(120) and big.view().state == "completed"
    assert big.view().preview.width < 10 * find_tab.PREVIEW_TILE  # the first 8 of 32 sources, readable
    assert {v.state for v in seen} <= {"starting", "running", "completed"}
    files = {p.name for p in view.out.iterdir()}
    assert set(RUN_FILES) - set(PHOTO_FILES) - {"checkpoint.pt"} <= files and "checkpoint.pt" not in files
    metrics = json.loads((view.out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps_done"] == 6
    trace = [float(r.split(",")[3]) for r in (view.out / "trace.csv").read_text().splitlines()[1:]]
    assert trace == pytest.approx(view.series["loss"])
    assert "completed" in view.status_line() and str(view.out) in view.status_line()


def test_stop_keeps_the_best_direction_as_ctrl_c_does(tmp_path):
    config = find_tab.find_config(str(TARGET), runs=tmp_path, **{**FIELDS, "steps": 100000})
    job = find_tab.FindJob(config).start()
    deadline = time.monotonic() + 120
    while job.view().step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.stop()
    assert job.wait(60)
    view = job.view()
    assert view.state == "interrupted"
    direction = essence.load_direction(view.out / "direction.safetensors")
    assert direction.metadata["status"] == "interrupted"
    assert 0 <= direction.metadata["best_step"] < view.step
    assert (view.out / "checkpoint.pt").is_file()  # `essence run --resume` continues it
    assert json.loads((view.out / "metrics.json").read_text())["steps_done"] == view.step


def test_stop_before_the_first_step_stops_there(tmp_path):
    job = find_tab.FindJob(find_tab.find_config(str(TARGET), runs=tmp_path, **FIELDS))
    job.stop()  # pressed while the models were still being built
    job.start()
    assert job.wait(60)
    view = job.view()
    assert view.state == "interrupted" and view.step == 0
    assert json.loads((view.out / "metrics.json").read_text())["steps_done"] == 0


# -- Apply -----------------------------------------------------------------------------------------


def test_the_slider_renders_the_direction_with_one_generator(runs, cache, monkeypatch):
    applied = apply_tab.load_applied(cache, runs / "a", sources="random", count=3, seed=0, truncation=0.7)
    built = []
    registry = get_registry()
    create = registry.create
    monkeypatch.setattr(registry, "create", lambda *a, **k: built.append(a) or create(*a, **k))
    at0 = apply_tab.at_strength(cache, applied, 0.0)
    at1 = apply_tab.at_strength(cache, applied, 1.0)
    at1_again = apply_tab.at_strength(cache, applied, 1.0)
    assert built == []  # the cached generator, never rebuilt
    assert len(at0) == 3 and at0[0].size == (apply_tab.VIEW_TILE, apply_tab.VIEW_TILE)
    assert at0[0].tobytes() != at1[0].tobytes()
    assert at1[0].tobytes() == at1_again[0].tobytes()
    g = cache.get(applied.generator, applied.generator_config)
    with torch.no_grad():
        sources = to_pil(g.synthesize(g.sample_ws(3, seed=0, truncation=0.7)))
    assert at0[1].tobytes() == fit_tile(sources[1], apply_tab.VIEW_TILE).tobytes()  # alpha 0: the sources


def test_export_writes_the_grid_the_images_and_the_direction(runs, cache, tmp_path):
    applied = apply_tab.load_applied(cache, runs / "a", sources="random", count=2, seed=1)
    grid, files = apply_tab.export(cache, applied, [0.0, 0.5, 1.0], tmp_path)
    from essence.method.figures import LABEL_HEIGHT, sheet_tile

    tile = sheet_tile(32)
    left = grid.width - 3 * tile  # the sources' names, then the tiles; the alphas' captions above them
    assert left > 0 and grid.size == (left + 3 * tile, LABEL_HEIGHT + 2 + 2 * tile)
    assert Image.open(files.grid).size == grid.size
    with zipfile.ZipFile(files.images) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"source_{r:02d}_alpha_{a}.png" for r in range(2) for a in ("0", "0.5", "1"))
        with zf.open("source_00_alpha_1.png") as fh:
            assert Image.open(fh).size == (32, 32)  # full resolution
    copied = essence.load_direction(files.direction)
    assert torch.equal(copied.b, applied.direction.b)
    assert files.grid.parent == tmp_path and not list(tmp_path.glob("*.tmp"))


def test_a_targetclip_npy_and_a_latent_file(runs, cache, tmp_path):
    b = essence.load_direction(runs / "a" / "direction.safetensors").b
    npy = tmp_path / "elsa.npy"
    np.save(npy, b[None].numpy())
    with pytest.raises(essence.EssenceError, match="does not say which generator"):
        apply_tab.load_applied(cache, npy)
    latents = tmp_path / "ws.pt"
    essence.save_latents(latents, essence.get_generator("toy-sprites").sample_ws(4, seed=3))
    applied = apply_tab.load_applied(cache, npy, generator="toy-sprites", sources="latent file", latents=str(latents))
    assert applied.ws.shape == (4, 8, 128) and applied.name == "elsa"
    assert torch.equal(applied.direction.b, b)


@pytest.mark.parametrize(
    "direction, fields, message",
    [
        (None, {}, "No direction"),
        ("notes.txt", {}, "not a direction file"),
        ("a", {"sources": "latent file"}, "upload a latent file"),
        ("a", {"count": 0}, "between 1 and 64"),
        ("a", {"sources": "photos"}, "Photo sources: upload one or more photos"),
        ("a", {"sources": "faces"}, "Unknown kind of sources"),
        ("wide.npy", {"generator": "toy-sprites"}, r"W\+ is \(8, 128\)"),
    ],
)
def test_apply_mistakes_are_messages(runs, cache, tmp_path, direction, fields, message):
    (tmp_path / "notes.txt").write_text("hello")
    essence.save_latents(tmp_path / "wide.npy", torch.zeros(1, 9, 128))  # one row more than toy-sprites' W+
    where = {None: None, "a": runs / "a"}.get(direction, tmp_path / str(direction))
    with pytest.raises(essence.EssenceError, match=message):
        apply_tab.load_applied(cache, where, **fields)


def test_names_from_untrusted_metadata_make_safe_file_names(runs, cache, tmp_path):
    applied = apply_tab.load_applied(cache, runs / "a", count=1)
    applied.direction.metadata["target"] = "../../etc/passwd"
    _, files = apply_tab.export(cache, applied, [1.0], tmp_path / "dl")
    assert files.grid.parent == tmp_path / "dl" and ".." not in files.grid.name


# -- Runs ------------------------------------------------------------------------------------------


def test_runs_are_listed_with_their_metrics(runs):
    listed = {r.name: r for r in runs_tab.list_runs(runs)}
    assert set(listed) == {"a", "b", "nested/c"}
    a = listed["a"]
    assert (a.status, a.generator, a.encoder, a.steps, a.has_direction) == (
        "completed",
        "toy-sprites",
        "toy-clip",
        4,
        True,
    )
    assert a.best_loss is not None and len(a.row()) == len(runs_tab.COLUMNS)
    assert runs_tab.list_runs(runs / "missing") == []


def test_a_broken_run_folder_is_listed_not_fatal(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    (tmp_path / "broken" / "sheet.png").write_bytes(b"not a png")
    (listed,) = runs_tab.list_runs(tmp_path)
    assert listed.status == "unreadable"
    details = runs_tab.run_details(tmp_path, "broken")
    assert details.sheet is None and details.metrics == {}


def test_run_details_give_the_pictures(runs):
    d = runs_tab.run_details(runs, "a")
    assert d.sheet is not None and d.heldout_sheet is not None and d.loss is not None
    assert d.metrics["status"] == "completed"


@pytest.mark.parametrize("name", ["..", "../x", "/etc", "a/../../x", ""])
def test_names_outside_the_runs_folder_are_refused(runs, name):
    with pytest.raises(essence.EssenceError, match="not a run folder"):
        runs_tab.resolve_run(runs, name)


def test_compare_uses_the_runs_own_results_when_their_sources_agree(runs, cache):
    tile = sheet_tile(32)
    figure = runs_tab.compare_runs(runs, ["a", "b"], cache)
    sources = [load_image(p) for p in sorted((runs / "a" / "images").glob("source_??.png"))]
    targets = [load_image(runs / r / "images" / "target_00.png") for r in ("a", "b")]
    rows = [
        (runs_tab.label(r, tile), [load_image(p) for p in sorted((runs / r / "images").glob("result_??.png"))])
        for r in ("a", "b")
    ]
    assert figure.tobytes() == comparison_figure(targets, sources, rows, tile=tile).tobytes()


def test_compare_applies_every_direction_to_the_first_runs_sources_otherwise(runs, cache):
    tile = sheet_tile(32)
    figure = runs_tab.compare_runs(runs, ["a", "nested/c"], cache)
    g = essence.get_generator("toy-sprites")
    count = json.loads((runs / "a" / "config.json").read_text())["sources"]["count"]
    ws = g.sample_ws(count, seed=0, truncation=0.7)  # run a's sources (seed 0)
    rows = []
    with torch.no_grad():
        sources = to_pil(g.synthesize(ws))
        for r in ("a", "nested/c"):
            b = essence.load_direction(runs / r / "direction.safetensors").b
            rows.append((runs_tab.label(r, tile), to_pil(g.synthesize(ws + b[None]))))
    targets = [load_image(runs / "a" / "images" / "target_00.png")]  # the same target once
    assert figure.tobytes() == comparison_figure(targets, sources, rows, tile=tile).tobytes()


def test_compare_mistakes_are_messages(runs, cache, tmp_path):
    with pytest.raises(essence.EssenceError, match="two or more"):
        runs_tab.compare_runs(runs, ["a"], cache)
    (runs / "bare").mkdir(exist_ok=True)
    (runs / "bare" / "metrics.json").write_text('{"status": "completed"}')
    try:
        with pytest.raises(essence.EssenceError, match="bare has no direction"):
            runs_tab.compare_runs(runs, ["nested/c", "bare"], cache)
    finally:
        (runs / "bare" / "metrics.json").unlink()
        (runs / "bare").rmdir()


# -- Photos: Apply's photo sources, the Invert tab, Find's init at the target ------------------------


@pytest.fixture(scope="module")
def sprite_photos(tmp_path_factory):
    return make_sprite_photos(tmp_path_factory.mktemp("photos"))


def test_photo_sources_are_inverted_once_and_shown_beside_their_reconstructions(runs, cache, sprite_photos, tmp_path):
    import shutil

    from essence.method.photos import invert_photos
    from essence.ui.photos import InversionCache

    inversions = InversionCache()
    applied = apply_tab.load_applied(cache, runs / "a", sources="photos", photos=sprite_photos, inversions=inversions)
    g = cache.get(applied.generator, applied.generator_config)
    direct = invert_photos(sprite_photos, g, "toy-sprites")  # the path every photo takes (toy-encoder, resize)
    assert torch.equal(applied.ws, direct.ws) and inversions.inverted == 2
    assert applied.photo_names == ["cat.png", "dog.jpg"] and applied.notes == []
    pairs = apply_tab.photo_view(cache, applied)
    assert [caption for _, caption in pairs] == ["cat.png: aligned", "cat.png: G(w)", "dog.jpg: aligned", "dog.jpg: G(w)"]
    assert pairs[1][0].tobytes() == apply_tab.at_strength(cache, applied, 0.0)[0].tobytes()  # G(w): alpha 0
    assert pairs[0][0].tobytes() == fit_tile(direct.aligned[0].crop.image, apply_tab.VIEW_TILE).tobytes()

    # The same photo under another name (a new upload) is found by its hash: nothing is inverted again.
    again = tmp_path / "cat-again.png"
    shutil.copyfile(sprite_photos[0], again)
    started = time.perf_counter()
    reused = apply_tab.load_applied(cache, runs / "b", sources="photos", photos=[str(again)], inversions=inversions)
    assert inversions.inverted == 2 and torch.equal(reused.ws, applied.ws[:1]) and reused.photo_names == ["cat-again.png"]
    assert time.perf_counter() - started < 5
    at0, at1 = apply_tab.at_strength(cache, applied, 0.0), apply_tab.at_strength(cache, applied, 1.0)
    assert at0[0].tobytes() != at1[0].tobytes()
    assert apply_tab.photo_view(cache, apply_tab.load_applied(cache, runs / "a", count=2)) == []  # random: no photos


def test_another_aligner_or_inverter_is_another_inversion(runs, cache, sprite_photos):
    from essence.ui.photos import NO_ALIGNMENT, InversionCache

    inversions = InversionCache()
    fields = dict(sources="photos", photos=sprite_photos[:1], inversions=inversions)
    apply_tab.load_applied(cache, runs / "a", **fields)
    apply_tab.load_applied(cache, runs / "a", aligner=NO_ALIGNMENT, inverter="toy-encoder", **fields)
    assert inversions.inverted == 2


def test_the_invert_tab_writes_the_file_essence_invert_writes(cache, sprite_photos, tmp_path):
    from safetensors import safe_open

    from essence.ui.invert import invert_upload
    from essence.ui.photos import InversionCache

    shown = invert_upload(cache, InversionCache(), sprite_photos, tmp_path / "dl", generator="toy-sprites")
    assert shown.latents == tmp_path / "dl" / "cat-latents.safetensors"
    result = CliRunner().invoke(build_app(), ["invert", *sprite_photos, "-g", "toy-sprites", "-o", str(tmp_path / "cli.safetensors")])
    assert result.exit_code == 0, result.output
    assert torch.equal(essence.load_latents(shown.latents), essence.load_latents(tmp_path / "cli.safetensors"))
    with safe_open(str(shown.latents), "pt") as ours, safe_open(str(tmp_path / "cli.safetensors"), "pt") as cli:
        mine, theirs = ours.metadata(), cli.metadata()
    assert json.loads(mine.pop("names")) == ["cat.png", "dog.jpg"]  # the uploaded names, not the server's copies
    theirs.pop("names")
    assert mine == theirs
    record = json.loads((tmp_path / "cli.json").read_text())
    assert [i["pixel_mse"] for i in shown.record["images"]] == pytest.approx([i["pixel_mse"] for i in record["images"]])
    assert Image.open(shown.sheet).size == Image.open(tmp_path / "cli_sheet.png").size
    assert [c for _, c in shown.pairs][::2] == ["cat.png: aligned", "dog.jpg: aligned"]
    assert "toy-encoder" in shown.summary and "mean pixel MSE" in shown.summary


def test_photo_mistakes_are_messages(runs, cache, sprite_photos, tmp_path, monkeypatch):
    from essence.core.registry import Registration
    from essence.plugins.aligners.simple import Resize
    from essence.ui import photos as photos_tab
    from essence.ui.invert import invert_upload

    inversions = photos_tab.InversionCache()

    def invert(photos, **fields):
        return invert_upload(cache, inversions, photos, tmp_path / "dl", generator="toy-sprites", **fields)

    with pytest.raises(essence.EssenceError, match="No photo: upload"):
        invert([])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(essence.EssenceError, match="No photo could be used: notes.txt is not a photo"):
        invert([str(tmp_path / "notes.txt")])
    shown = invert([str(tmp_path / "notes.txt"), sprite_photos[0]])  # one line; the other photo goes on
    assert len(shown.pairs) == 2 and "notes.txt is not a photo: upload one of .png" in shown.summary
    with pytest.raises(essence.EssenceError, match="makes 'center' crops, but generator 'toy-sprites' expects 'none'") as info:
        invert(sprite_photos, aligner="center-crop")
    assert "pick the aligner resize, or the aligner 'none (already aligned" in str(info.value) and "--" not in str(info.value)
    monkeypatch.setattr(Registration, "missing", lambda self: ["dlib"] if self.name == "ffhq-dlib" else [])
    with pytest.raises(essence.EssenceError, match=r'needs dlib\) is not installed: pip install "essence-transfer\[photos\]"'):
        invert(sprite_photos, aligner="ffhq-dlib")
    with pytest.raises(essence.EssenceError, match="or pick the aligner 'none"):
        apply_tab.load_applied(cache, runs / "a", sources="photos", photos=sprite_photos, aligner="ffhq-dlib")
    monkeypatch.setattr(photos_tab, "MAX_PHOTO_BYTES", 100)
    with pytest.raises(essence.EssenceError, match=r"cat.png is too large .* downscale it first"):
        invert(sprite_photos)
    monkeypatch.undo()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 96 x 96 is over twice that: refused before decoding
    with pytest.raises(essence.EssenceError, match=r"dog.jpg has more pixels than .* \(a decompression bomb\?\): downscale it first"):
        invert_upload(cache, photos_tab.InversionCache(), sprite_photos[1:], tmp_path / "dl", generator="toy-sprites")
    monkeypatch.undo()

    # No face found in one photo: a note; the other photo is still used. In every photo: a message.
    align = Resize.align
    monkeypatch.setattr(Resize, "align", lambda self, image, *a, **k: [] if image.size == (1, 1) else align(self, image, *a, **k))
    blank = tmp_path / "blank.png"
    Image.new("RGB", (1, 1)).save(blank)
    applied = apply_tab.load_applied(
        cache, runs / "a", sources="photos", photos=[str(blank), sprite_photos[0]], inversions=inversions
    )
    assert applied.ws.shape[0] == 1 and applied.notes == ["blank.png: no face found."]
    with pytest.raises(essence.EssenceError, match="No source photo could be used: .*no face found"):
        apply_tab.load_applied(cache, runs / "a", sources="photos", photos=[str(blank)], inversions=inversions)


def test_the_find_fields_start_at_the_default_preset_and_follow_the_preset():
    assert find_tab.preset_fields("essence-in") == (100, 32) and find_tab.preset_inverts("essence-in")
    assert find_tab.preset_fields("paper") == (1000, 6) and not find_tab.preset_inverts("paper")


def test_unticking_the_inversion_start_of_essence_in_starts_at_random(tmp_path, cache):
    fields = {**FIELDS, "preset": "essence-in"}
    assert find_tab.find_config(str(TARGET), runs=tmp_path, **fields).init.mode == "random"
    # ticked, essence-in keeps its 'auto' (a random start, said in the status, where it cannot invert)
    assert find_tab.find_config(str(TARGET), runs=tmp_path, init_target=True, cache=cache, **fields).init.mode == "auto"
    assert find_tab.find_config(str(TARGET), runs=tmp_path, **{**FIELDS, "preset": "paper"}).init.mode == "random"


def test_find_can_start_at_the_target_inversion_when_the_generator_has_an_inverter(cache, tmp_path):
    from essence.ui.photos import generator_inverter

    assert generator_inverter("toy-sprites", cache)[0] == "toy-encoder"
    assert generator_inverter("stylegan2-ffhq", cache)[0] == "e4e"  # declared: nothing is built
    inverter, why = generator_inverter("stylegan2", cache)  # a checkpoint file not given: no inverter to ask
    assert inverter is None and "weights" in why
    with pytest.raises(essence.EssenceError, match="Cannot start at the target's inversion: The generator 'stylegan2'"):
        find_tab.find_config(str(TARGET), runs=tmp_path, init_target=True, cache=cache, **{**FIELDS, "generator": "stylegan2"})
    with pytest.raises(essence.EssenceError, match="one start: set Restarts to 1"):
        find_tab.find_config(str(TARGET), runs=tmp_path, init_target=True, cache=cache, **{**FIELDS, "restarts": 2})
    config = find_tab.find_config(str(TARGET), runs=tmp_path, init_target=True, cache=cache, **{**FIELDS, "steps": 2})
    assert config.init.mode == "target"
    job = find_tab.FindJob(config).start()
    assert job.wait(120)
    view = job.view()
    assert view.state == "completed", view.message
    g = cache.get("toy-sprites", {"device": "cpu"})
    from essence.method.photos import invert_photos

    expected = invert_photos([str(TARGET)], g, "toy-sprites").ws
    assert torch.equal(essence.load_latents(view.out / "init.safetensors"), expected)
