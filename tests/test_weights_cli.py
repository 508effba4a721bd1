"""`essence weights ...` driven through the real CLI app."""

from __future__ import annotations

import json

import pytest
from weights_support import HTML_PAGE, make_asset, make_blob, no_network, plugin, server, sha256  # noqa: F401

from essence.cli import main

SIZE = 120_000


def run(capsys, *args):
    code = main(["weights", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The error, after any progress output; it must be a single line."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


def test_list_json_shows_registered_assets_and_their_state(server, plugin, essence_home, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    plugin.add(make_asset("other", [server.url("other.ckpt")], data, sha=False, size=False, convert=None))
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["cache"] == str(essence_home / "weights")
    rows = {r["name"]: r for r in listing["assets"] if r["plugin"] == "weights-test"}
    assert set(rows) == {"tiny", "other"}
    assert rows["tiny"]["status"] == "missing" and rows["tiny"]["plugin"] == "weights-test"
    assert rows["tiny"]["size"] == SIZE and rows["tiny"]["sha256"] == sha256(data)
    assert rows["tiny"]["license"] == "Test Licence (non-commercial)" and rows["tiny"]["kind"] == "generator"
    assert rows["tiny"]["path"] == str(essence_home / "weights" / "tiny" / "tiny.safetensors")
    assert rows["other"]["path"].endswith("other.ckpt")

    assert run(capsys, "pull", "tiny")[0] == 0
    rows = {r["name"]: r for r in json.loads(run(capsys, "list", "--json")[1])["assets"]}
    assert rows["tiny"]["status"] == "cached" and rows["other"]["status"] == "missing"
    code, out, _ = run(capsys, "list")
    assert code == 0 and "tiny" in out and "cached" in out and "120.0 kB" in out


def test_pull_path_verify_rm(server, plugin, essence_home, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    code, out, err = run(capsys, "pull", "tiny")
    assert code == 0 and "Licence: Test Licence" in err
    target = essence_home / "weights" / "tiny" / "tiny.safetensors"
    assert f"tiny: ready at {target}" in out
    assert "already cached" in run(capsys, "pull", "tiny")[1]

    code, out, _ = run(capsys, "path", "tiny")
    assert (code, out.strip()) == (0, str(target))

    code, out, _ = run(capsys, "verify")
    assert code == 0 and out.count("OK") == 2

    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    code, out, err = run(capsys, "verify", "tiny")
    assert code == 2 and "FAILED" in out
    assert "1 file(s) failed verification; run `essence weights pull tiny --force`" in one_line_error(err)

    code, out, _ = run(capsys, "rm", "tiny")
    assert code == 0 and not target.parent.exists()
    code, _, err = run(capsys, "path", "tiny")
    assert code == 2 and "is not ready (missing" in one_line_error(err)


def test_pull_offline_opens_no_socket(plugin, essence_home, no_network, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    code, _, err = run(capsys, "pull", "tiny", "--offline")
    assert code == 2
    assert "offline mode is on (--offline). Run `essence weights pull tiny` while online" in one_line_error(err)


def test_pull_checks_every_name_before_downloading(server, plugin, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    code, _, err = run(capsys, "pull", "tiny", "tinny")
    assert code == 2 and "Unknown asset 'tinny'. Did you mean 'tiny'?" in one_line_error(err)
    assert server.log == []


def test_pull_failure_is_one_line_with_a_reason_per_source(server, plugin, capsys):
    data = make_blob(SIZE)
    urls = [server.url("gone.ckpt"), server.serve("quota.ckpt", HTML_PAGE, content_type="text/html")]
    plugin.add(make_asset("tiny", urls, data))
    code, _, err = run(capsys, "pull", "tiny")
    text = one_line_error(err)
    assert code == 2
    assert f"{urls[0]} -> HTTP 404 Not Found; {urls[1]} -> got an HTML page" in text
    assert "run `essence weights import tiny FILE`" in text


def test_import_and_convert_commands(plugin, essence_home, tmp_path, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    mine = tmp_path / "mine.ckpt"
    mine.write_bytes(data)
    code, out, _ = run(capsys, "import", "tiny", str(mine))
    assert code == 0 and "ready at" in out
    assert run(capsys, "path", "tiny")[1].strip().endswith("tiny.safetensors")

    out_file = tmp_path / "out.safetensors"
    code, out, _ = run(capsys, "convert", str(mine), str(out_file))
    assert code == 0 and "format fake" in out and "payload_bytes: 119992" in out and out_file.is_file()
    code, _, err = run(capsys, "convert", str(mine), str(out_file))
    assert code == 2 and "exists; pass --force" in one_line_error(err)
    assert run(capsys, "convert", str(mine), str(out_file), "--force")[0] == 0

    html = tmp_path / "page.ckpt"
    html.write_bytes(HTML_PAGE)
    code, _, err = run(capsys, "import", "tiny", str(html))
    assert code == 2 and "is an HTML page" in one_line_error(err)
    code, _, err = run(capsys, "convert", str(tmp_path / "nope.pkl"), str(tmp_path / "x.safetensors"))
    assert code == 2 and "No such file" in one_line_error(err)
    code, _, err = run(capsys, "convert", str(mine), str(tmp_path / "x.safetensors"), "--format", "stylegan9")
    assert code == 2 and "Unknown format 'stylegan9'. Known formats: " in one_line_error(err) and "fake (test" in err


@pytest.mark.parametrize("command", ["path", "rm", "verify", "pull"])
def test_unknown_names_are_one_line_errors(plugin, capsys, command):
    code, _, err = run(capsys, command, "no-such-weights")
    assert code == 2 and "Unknown asset 'no-such-weights'. Run `essence weights list`" in one_line_error(err)
