"""`essence ui`'s app through gradio_client, against a real server on 127.0.0.1 (a free port).

The whole module refuses every connection of this process that leaves the machine, server and client
alike: the page must work offline.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

import essence  # noqa: E402
from ui_support import TARGET, loopback_guard, serve, sprite_photos, toy_run  # noqa: E402

FIND = ("toy-sprites", "toy-clip", "paper")
OWN = "(the generator's)"
NO_PHOTOS = (None, OWN, OWN)  # Apply's photo fields: no photos, the generator's aligner and inverter


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-app")
    runs = root / "runs"
    toy_run(runs / "first", seed=0)
    toy_run(runs / "second", seed=0)
    with loopback_guard() as refused:
        with serve(runs, root / "scratch") as (url, state):
            yield url, state
    assert refused == [], f"connections that left 127.0.0.1: {refused}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return sprite_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    url, _ = server
    return Client(url, verbose=False, download_files=str(tmp_path))


def test_find_runs_the_toy_models_and_gives_the_direction(client, server):
    from gradio_client import handle_file

    status, loss, preview, download = client.predict(handle_file(str(TARGET)), *FIND, 5, 0, 1, 6, False, api_name="/find")
    assert status.startswith("**completed** · step 5/5")
    assert loss and preview  # the last loss curve and results are sent even when unchanged
    direction = essence.load_direction(download["value"])
    _, state = server
    run = state.job.view().out
    assert run.parent == state.runs and run.name.startswith("in-domain-")
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert direction.metadata["generator"] == "toy-sprites"


def test_a_bundled_target_is_served_from_any_folder(client, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)  # the package is outside the current folder, as after pip install
    shown = client.predict("out-of-domain", api_name="/bundled_target")
    with Image.open(shown) as img, Image.open(TARGET.with_name("out-of-domain.png")) as bundled:
        assert img.convert("RGB").tobytes() == bundled.convert("RGB").tobytes()


def test_the_page_is_private(server):
    import os
    import urllib.request

    url, _ = server
    with urllib.request.urlopen(url + "config") as response:
        config = json.loads(response.read())
    assert config["analytics_enabled"] is False and os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert config["run_history"] is False and "gradio" not in config["footer_links"]
    assert config.get("share_url") in (None, "")


def test_mistakes_come_back_as_one_line_messages(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(None, *FIND, 5, 0, 1, 6, False, api_name="/find")
    assert str(info.value) == "No target image: upload one or pick a bundled target."
    with pytest.raises(AppError, match="Pick two or more runs to compare"):
        client.predict(["first"], api_name="/compare")


def test_stop_and_the_slider_answer_while_an_optimisation_runs(client, server):
    from gradio_client import handle_file

    _, state = server
    client.predict("first", None, "(the direction's own)", "random", 3, 0, 0.7, None, "0,1", 1.0, *NO_PHOTOS, api_name="/apply")
    job = client.submit(handle_file(str(TARGET)), *FIND, 100000, 0, 1, 6, False, api_name="/find")
    deadline = time.monotonic() + 120
    while (state.job is None or state.job.wait(0) or state.job.view().step < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.job.view().state == "running"
    started = time.monotonic()
    moved = client.predict(0.5, api_name="/strength")  # not queued behind the optimisation
    assert len(moved) == 3
    assert client.predict(api_name="/stop").startswith("Stopping after this step")
    assert time.monotonic() - started < 30
    status = job.result(timeout=120)[0]
    assert status.startswith("**interrupted**")
    assert essence.load_direction(state.job.view().out / "direction.safetensors").metadata["status"] == "interrupted"


def test_apply_gives_the_grid_the_images_and_a_slider_that_changes_them(client):
    from PIL import Image

    sources, results, grid, grid_file, images_file, direction_file, pairs, notes = client.predict(
        "first", None, "(the direction's own)", "random", 4, 0, 0.7, None, "0,0.5,1", 1.0, *NO_PHOTOS, api_name="/apply"
    )
    assert len(sources) == len(results) == 4
    from essence.method.figures import LABEL_HEIGHT

    with Image.open(grid) as g:
        tile = (g.height - LABEL_HEIGHT - 2) // 4  # 4 sources of square tiles under the alphas' captions
        left = g.width - 3 * tile  # 3 strengths, right of the sources' names
        assert tile > 0 and 0 < left < tile and g.height == LABEL_HEIGHT + 2 + 4 * tile
    assert images_file["value"].endswith(".zip") and grid_file["value"].endswith(".png")
    assert essence.load_direction(direction_file["value"]).metadata["generator"] == "toy-sprites"

    def pixels(gallery):
        with Image.open(gallery[0]["image"]) as img:
            return img.convert("RGB").tobytes()

    at_half = client.predict(0.5, api_name="/strength")
    at_zero = client.predict(0.0, api_name="/strength")
    assert pixels(at_half) != pixels(results) and pixels(at_zero) == pixels(sources)


def test_runs_list_show_and_compare(client):
    from PIL import Image

    choices = client.predict(api_name="/refresh")
    rows = choices[-1]["data"] if isinstance(choices[-1], dict) else choices[-1]
    names = [row[0] for row in rows]
    assert {"first", "second"} <= set(names)
    sheet, heldout_sheet, loss, metrics = client.predict("first", api_name="/show_run")
    assert sheet and heldout_sheet and loss and metrics["status"] == "completed"
    figure = client.predict(["first", "second"], api_name="/compare")
    with Image.open(figure) as img, Image.open(sheet) as run_sheet:
        assert img.width == run_sheet.width and img.height > run_sheet.height  # a row per run under the sources


def test_a_name_outside_the_runs_folder_is_refused(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):
        client.predict("../../etc", api_name="/show_run")


def test_photo_sources_show_their_reconstructions_and_the_slider_moves_them(client, server, photos):
    from gradio_client import handle_file
    from PIL import Image

    _, state = server
    photos = [handle_file(p) for p in photos]
    before = state.inversions.inverted
    sources, results, _, _, images_file, _, pairs, notes = client.predict(
        "first", None, "(the direction's own)", "photos", 6, 0, 0.7, None, "0,1", 1.0, photos, OWN, OWN, api_name="/apply"
    )
    assert len(sources) == len(results) == 2 and state.inversions.inverted == before + 2
    assert pairs["visible"] is True and notes == ""
    pairs = pairs["value"]
    assert [p["caption"] for p in pairs] == ["cat.png: aligned", "cat.png: G(w)", "dog.jpg: aligned", "dog.jpg: G(w)"]
    with Image.open(pairs[1]["image"]) as recon, Image.open(sources[0]["image"]) as source:
        assert recon.convert("RGB").tobytes() == source.convert("RGB").tobytes()  # G(w) is the source at alpha 0
    moved = client.predict(0.3, api_name="/strength")
    with Image.open(moved[0]["image"]) as a, Image.open(results[0]["image"]) as b:
        assert a.convert("RGB").tobytes() != b.convert("RGB").tobytes()
    client.predict("second", None, "(the direction's own)", "photos", 6, 0, 0.7, None, "0,1", 1.0, photos, OWN, OWN, api_name="/apply")
    assert state.inversions.inverted == before + 2  # uploaded again: found by their hashes, not inverted again


def test_the_invert_tab_gives_the_latents(client, photos):
    from gradio_client import handle_file

    status, pairs, sheet, latents, record = client.predict(
        [handle_file(photos[0])], "toy-sprites", OWN, OWN, api_name="/invert"
    )
    assert status.startswith("**1 image(s)** into `toy-sprites`") and "toy-encoder" in status
    assert len(pairs) == 2 and sheet
    assert latents["value"].endswith("cat-latents.safetensors")
    assert essence.load_latents(latents["value"]).shape == (1, 8, 128)
    assert json.loads(open(record["value"]).read())["images"][0]["name"] == "cat.png"


def test_photo_mistakes_and_the_init_checkbox(client, server, photos):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, state = server
    with pytest.raises(AppError, match="No photo: upload one or more photos to invert."):
        client.predict([], "toy-sprites", OWN, OWN, api_name="/invert")
    with pytest.raises(AppError, match="makes 'center' crops"):
        client.predict([handle_file(photos[0])], "toy-sprites", "center-crop", OWN, api_name="/invert")
    enabled = client.predict("toy-sprites", "essence-in", api_name="/generator_inverter")
    assert enabled["interactive"] is True and "toy-encoder" in enabled["info"] and enabled["value"] is True
    assert client.predict("toy-sprites", "paper", api_name="/generator_inverter")["value"] is False
    n_steps, n_sources, box = client.predict("paper", "toy-sprites", api_name="/preset_fields")  # the fields follow
    assert (n_steps, n_sources, box["value"]) == (1000, 6, False)
    assert client.predict("essence-in", "toy-sprites", api_name="/preset_fields")[:2] == (100, 32)
    disabled = client.predict("stylegan2", "essence-in", api_name="/generator_inverter")  # no checkpoint given: no inverter
    assert disabled["interactive"] is False and disabled["value"] is False and disabled["info"].startswith("Not available")
    status, *_ = client.predict(handle_file(str(TARGET)), *FIND, 3, 0, 1, 6, True, api_name="/find")
    assert status.startswith("**completed** · step 3/3")
    assert (state.job.view().out / "init.safetensors").is_file()  # b started at the target's inversion
