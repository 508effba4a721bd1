"""The cache: pull, resolve, import, verify, rm, convert, offline mode and several processes at once."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from rich.console import Console
from weights_support import (  # noqa: F401  (fixtures)
    HTML_PAGE,
    NetworkUsed,
    make_asset,
    make_blob,
    no_network,
    plugin,
    server,
    sha256,
    start_pull_process,
)

import essence
from essence.weights.cache import cache_entry, convert_file, import_file, pull, remove, verify

SIZE = 150_000


def quiet():
    out = io.StringIO()
    return Console(file=out, width=200), out


def read_tensor(path):
    from safetensors.numpy import load_file

    return load_file(str(path))["payload"].tobytes()


@pytest.fixture
def no_network_later(monkeypatch):
    """Call it to block sockets from then on."""
    import socket

    def block():
        class Blocked(socket.socket):
            def __init__(self, *a, **k):
                raise NetworkUsed("a socket was opened")

        monkeypatch.setattr(socket, "socket", Blocked)
        monkeypatch.setattr(socket, "create_connection", Blocked)

    return block


def test_resolve_downloads_converts_records_then_uses_the_cache(server, plugin, essence_home, no_network_later, capsys):
    data = make_blob(SIZE)
    asset = plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    path = essence.resolve_weights("tiny", kind="generator")
    assert path == essence_home / "weights" / "tiny" / "tiny.safetensors"
    assert read_tensor(path) == data[8:]
    err = capsys.readouterr().err
    assert "Licence: Test Licence (non-commercial); see https://example.org/licence" in err
    assert err.index("Licence") < err.index("Converting")

    record = json.loads((path.parent / "tiny.json").read_text())
    assert record["source"]["url"] == asset.urls[0]
    assert record["source"]["sha256"] == sha256(data) and record["source"]["size"] == SIZE
    assert record["converted"]["sha256"] == sha256(path.read_bytes())
    assert record["converted"]["info"] == {"format": "fake", "payload_bytes": SIZE - 8}
    assert record["format"] == "fake-ckpt" and record["source"]["date"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.ckpt", "tiny.json", "tiny.safetensors"]

    no_network_later()  # a cache hit must not even look at the network
    assert essence.resolve_weights("tiny") == path
    assert len(server.requests("tiny.ckpt")) == 1


def test_asset_without_converter_resolves_to_the_download(server, plugin):
    data = make_blob(SIZE)
    plugin.add(make_asset("raw", [server.serve("raw.ckpt", data)], data, convert=None))
    path = essence.resolve_weights("raw")
    assert path.name == "raw.ckpt" and path.read_bytes() == data


def test_wrong_kind_is_refused_before_downloading(server, plugin):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    with pytest.raises(essence.WeightsError, match="holds generator weights, not encoder weights"):
        essence.resolve_weights("tiny", kind="encoder")
    assert server.log == []


def test_unknown_sha256_is_recorded_on_first_download_and_shown(server, plugin):
    data = make_blob(SIZE)
    plugin.add(make_asset("nosha", [server.serve("nosha.ckpt", data)], data, sha=False, size=False))
    console, out = quiet()
    entry = pull("nosha", console=console)
    assert entry.record["source"]["sha256"] == sha256(data)
    assert entry.record["source"]["sha256_published"] is False
    assert f"recorded {sha256(data)}" in out.getvalue()


def test_progress_callback_reaches_the_full_size(server, plugin):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    seen = []
    essence.resolve_weights("tiny", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (SIZE, SIZE)


def test_failed_download_leaves_nothing_in_the_cache(server, plugin, essence_home):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", HTML_PAGE, content_type="text/html")], data))
    with pytest.raises(essence.WeightsError, match="HTML page.*essence weights import tiny FILE"):
        essence.resolve_weights("tiny")
    assert not (essence_home / "weights" / "tiny").exists()
    assert cache_entry("tiny").status == "missing"


def test_offline_never_opens_a_socket_and_says_what_to_do(server, plugin, essence_home, no_network, monkeypatch):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.url("tiny.ckpt")], data))
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    with pytest.raises(essence.WeightsError) as exc:
        essence.resolve_weights("tiny")
    msg = str(exc.value)
    assert "offline mode is on (ESSENCE_OFFLINE is set)" in msg
    assert "`essence weights pull tiny`" in msg and "`essence weights import tiny tiny.ckpt`" in msg
    assert str(essence_home / "weights" / "tiny" / "tiny.ckpt") in msg
    monkeypatch.delenv("ESSENCE_OFFLINE")
    with pytest.raises(essence.WeightsError, match=r"offline mode is on \(--offline\)"):
        essence.resolve_weights("tiny", offline=True)
    with pytest.raises(NetworkUsed):  # the blocker works: online, the same call reaches for a socket
        essence.resolve_weights("tiny")


def test_downloaded_but_not_converted_is_converted_on_resolve_offline(server, plugin, no_network_later):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    plugin.set_converter(False)
    with pytest.raises(essence.WeightsError, match="needs the converter 'fake', which no installed plugin provides"):
        essence.resolve_weights("tiny")
    entry = cache_entry("tiny")
    assert entry.status == "not converted" and entry.source.read_bytes() == data
    plugin.set_converter(True)
    no_network_later()
    path = essence.resolve_weights("tiny", offline=True)
    assert read_tensor(path) == data[8:] and cache_entry("tiny").status == "cached"


def test_file_copied_into_the_cache_by_hand_is_checked_and_used(plugin, essence_home, no_network):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    folder = essence_home / "weights" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.ckpt").write_bytes(data)
    assert cache_entry("tiny").status == "unverified"
    path = essence.resolve_weights("tiny", offline=True)
    assert read_tensor(path) == data[8:]


def test_wrong_file_in_the_cache_is_deleted_not_used(plugin, essence_home, no_network):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    folder = essence_home / "weights" / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.ckpt").write_bytes(make_blob(SIZE, seed=5))
    console, out = quiet()
    with pytest.raises(essence.WeightsError, match="not in the cache"):
        pull("tiny", offline=True, console=console)
    assert "its SHA256 is" in out.getvalue()
    assert not (folder / "tiny.ckpt").exists()


def test_import_checks_copies_and_converts(plugin, tmp_path, no_network):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    mine = tmp_path / "download.ckpt"
    mine.write_bytes(data)
    entry = import_file("tiny", mine, console=quiet()[0])
    assert entry.status == "cached" and read_tensor(entry.path) == data[8:]
    assert entry.record["source"]["imported_from"] == str(mine) and entry.record["source"]["url"] is None
    assert mine.read_bytes() == data  # the user's file is left alone


@pytest.mark.parametrize(
    "content, message",
    [
        (HTML_PAGE, "is an HTML page"),
        (make_blob(SIZE)[:-10], f"has {SIZE - 10} bytes, but 'tiny' \\(tiny.ckpt\\) has {SIZE}"),
        (make_blob(SIZE, seed=3), "its SHA256 is .*, expected"),
    ],
)
def test_import_rejects_the_wrong_file_and_keeps_the_cache_as_it_was(plugin, essence_home, tmp_path, content, message):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    good = tmp_path / "good.ckpt"
    good.write_bytes(data)
    import_file("tiny", good, console=quiet()[0])
    before = {p.name: p.read_bytes() for p in (essence_home / "weights" / "tiny").iterdir()}
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(essence.WeightsError, match=message):
        import_file("tiny", bad, console=quiet()[0])
    after = {p.name: p.read_bytes() for p in (essence_home / "weights" / "tiny").iterdir()}
    assert after == before
    assert not any((essence_home / "weights" / ".incoming").iterdir())


def test_converter_error_is_a_weights_error_and_caches_nothing(plugin, tmp_path):
    """An imported file is converted aside: one that does not convert never enters the cache (issue 16)."""
    data = b"FAKECKPTBAD" + bytes(100)
    plugin.add(make_asset("tiny", ["https://example.invalid/tiny.ckpt"], data))
    mine = tmp_path / "x.ckpt"
    mine.write_bytes(data)
    with pytest.raises(essence.WeightsError, match="Could not convert .*: this fake checkpoint is damaged"):
        import_file("tiny", mine, console=quiet()[0])
    assert cache_entry("tiny").status == "missing" and mine.read_bytes() == data


def test_verify_finds_a_corrupted_file(server, plugin):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    path = essence.resolve_weights("tiny")
    assert all(c.ok for c in verify("tiny")) and len(verify("tiny")) == 2
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    checks = verify("tiny")
    assert [c.ok for c in checks] == [True, False]
    assert "differs from the recorded" in checks[1].detail


def test_force_downloads_again_and_rm_removes_everything(server, plugin, essence_home):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    console = quiet()[0]
    pull("tiny", console=console)
    pull("tiny", console=console)
    assert len(server.requests("tiny.ckpt")) == 1
    pull("tiny", force=True, console=console)
    assert len(server.requests("tiny.ckpt")) == 2
    assert remove("tiny", console=console) is True
    assert not (essence_home / "weights" / "tiny").exists()
    assert cache_entry("tiny").status == "missing"
    assert remove("tiny", console=console) is False


def test_convert_file_detects_the_format(plugin, tmp_path):
    src = tmp_path / "in.ckpt"
    src.write_bytes(make_blob(1000))
    conv, info = convert_file(src, tmp_path / "out.safetensors")
    assert conv.name == "fake" and conv.plugin == "weights-test" and info["payload_bytes"] == 992
    assert read_tensor(tmp_path / "out.safetensors") == src.read_bytes()[8:]
    other = tmp_path / "other.bin"
    other.write_bytes(b"\x80\x04 not a checkpoint we know")
    with pytest.raises(essence.WeightsError, match=r"No converter recognises .*other.bin. Known formats: .*fake \(test"):
        convert_file(other, tmp_path / "o.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ckpt", "other.bin", "out.safetensors"]


def test_converter_that_writes_garbage_is_caught(plugin, tmp_path):
    from essence.weights.assets import Converter

    src = tmp_path / "in.ckpt"
    src.write_bytes(make_blob(100))
    garbage = Converter("junk", lambda p: True, lambda s, d: d.write_bytes(b"nonsense") or {}, "", "t")
    with pytest.raises(essence.WeightsError, match="wrote a file that is not safetensors"):
        convert_file(src, tmp_path / "out.safetensors", converter=garbage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ckpt"]


# -- several processes -----------------------------------------------------------------------------


def _wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_two_processes_pulling_the_same_asset(server, essence_home):
    data = make_blob(SIZE)
    gate = threading.Event()
    url = server.serve("tiny.ckpt", data, gate=gate, gate_after=40_000)
    asset = make_asset("tiny", [url], data, convert=None)
    first = start_pull_process(asset)
    second = None
    try:
        _wait_for(lambda: server.requests("tiny.ckpt"), what="the first download to start")
        second = start_pull_process(asset)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(second.stderr), daemon=True)
        reader.start()
        _wait_for(lambda: any("Waiting for another essence process" in ln for ln in lines), what="the second to wait")
        gate.set()
        out1, err1 = first.communicate(timeout=60)
        out2 = second.stdout.read()
        assert second.wait(timeout=60) == 0, "".join(lines)
        assert first.returncode == 0, err1
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    target = essence_home / "weights" / "tiny" / "tiny.ckpt"
    assert f"DONE {target}" in out1 and f"DONE {target}" in out2
    assert len(server.requests("tiny.ckpt")) == 1  # the second found it cached
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.ckpt", "tiny.json"]


def test_killed_download_leaves_a_consistent_cache_and_the_next_pull_resumes(server, plugin, essence_home):
    data = make_blob(SIZE)
    gate = threading.Event()
    url = server.serve("tiny.ckpt", data, gate=gate, gate_after=100_000)
    asset = plugin.add(make_asset("tiny", [url], data, convert=None))
    part = essence_home / "weights" / "tiny" / "tiny.ckpt.part"
    child = start_pull_process(asset)
    try:
        _wait_for(lambda: part.exists() and part.stat().st_size >= 65_536, what="bytes on disk")
    finally:
        child.kill()
        child.wait(timeout=30)
    kept = part.stat().st_size
    entry = cache_entry("tiny")
    assert entry.status == "partial" and entry.record is None and not entry.source.exists()
    with pytest.raises(essence.WeightsError, match="a partial download is kept and will resume"):
        essence.resolve_weights("tiny", offline=True)

    gate.set()
    server.serve("tiny.ckpt", data)
    path = essence.resolve_weights("tiny")
    assert path.read_bytes() == data
    assert server.requests("tiny.ckpt")[-1]["range"] == f"bytes={kept}-"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.ckpt", "tiny.json"]


def test_unwritable_cache_is_a_clear_error(server, plugin, tmp_path, monkeypatch):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data)], data))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ESSENCE_HOME", str(blocker / "home"))
    with pytest.raises(essence.WeightsError, match="Set ESSENCE_HOME to a writable folder"):
        essence.resolve_weights("tiny")


def test_a_corrected_sha256_in_the_registry_replaces_the_cached_file(server, plugin):
    old, new = make_blob(SIZE, seed=1), make_blob(SIZE, seed=2)
    url = server.serve("tiny.ckpt", old)
    plugin.add(make_asset("tiny", [url], old, sha=False))
    console = quiet()[0]
    assert pull("tiny", console=console).source.read_bytes() == old
    plugin.assets.clear()
    plugin.add(make_asset("tiny", [url], new))  # the plugin now publishes the right file's SHA256
    server.serve("tiny.ckpt", new)
    assert cache_entry("tiny").status == "unverified"
    entry = pull("tiny", console=console)
    assert entry.status == "cached" and entry.source.read_bytes() == new
