"""Downloads against a misbehaving server on 127.0.0.1: a deadline for the whole pull (a server that drips a
byte every so often never holds it for ever), and timeout messages that say which wait ran out."""

from __future__ import annotations

import time

import pytest
from weights_support import make_asset, make_blob, plugin, server, sha256  # noqa: F401

import essence
from essence.cli import main
from essence.weights.download import DownloadError, download, download_deadline, part_path

SIZE = 50_000


def test_a_dripping_server_is_given_up_at_the_deadline(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, drip=0.05)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"gave up at the 0.8 s deadline with \d+ of 50000 bytes") as exc:
        download([url], tmp_path / "a.ckpt", timeout=5, deadline=0.8)
    assert time.monotonic() - start < 3
    assert "the server sends too slowly" in str(exc.value) and "resumes" in str(exc.value)
    assert part_path(tmp_path / "a.ckpt").is_file()  # what arrived is kept for the next pull


def test_the_deadline_comes_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ESSENCE_DOWNLOAD_DEADLINE", "0.6")
    url = server.serve("a.ckpt", make_blob(SIZE), drip=0.05)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="0.6 s deadline"):
        download([url], tmp_path / "a.ckpt", timeout=5)
    assert time.monotonic() - start < 3


def test_the_deadline_is_for_the_whole_pull_not_each_mirror(server, tmp_path):
    data = make_blob(SIZE)
    slow = server.serve("slow.ckpt", data, drip=0.05)
    fine = server.serve("fine.ckpt", data)
    with pytest.raises(DownloadError, match="deadline"):
        download([slow, fine], tmp_path / "a.ckpt", timeout=5, deadline=0.6)
    assert server.requests("fine.ckpt") == []


def test_after_the_deadline_the_next_pull_resumes(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, drip=0.05, times=1)
    with pytest.raises(DownloadError):
        download([url], tmp_path / "a.ckpt", timeout=5, deadline=0.5)
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data), timeout=5, deadline=30)
    assert got.path.read_bytes() == data
    assert server.requests("a.ckpt")[-1]["range"] is not None


@pytest.mark.parametrize("value, expected", [("", 6 * 3600.0), ("12", 12.0), ("0", None), ("none", None), ("inf", None)])
def test_deadline_settings(monkeypatch, value, expected):
    monkeypatch.setenv("ESSENCE_DOWNLOAD_DEADLINE", value)
    assert download_deadline() == expected


@pytest.mark.parametrize("value", ["soon", "12s", "1e"])
def test_a_bad_deadline_setting_is_a_clean_error(monkeypatch, value):
    monkeypatch.setenv("ESSENCE_DOWNLOAD_DEADLINE", value)
    with pytest.raises(essence.WeightsError, match="ESSENCE_DOWNLOAD_DEADLINE"):
        download_deadline()


def test_pull_through_the_cli_stops_at_the_deadline(server, plugin, monkeypatch, capsys):
    data = make_blob(SIZE)
    plugin.add(make_asset("tiny", [server.serve("tiny.ckpt", data, drip=0.05)], data))
    monkeypatch.setenv("ESSENCE_DOWNLOAD_DEADLINE", "0.6")
    start = time.monotonic()
    assert main(["weights", "pull", "tiny"]) == 2
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "deadline" in err and "Traceback" not in err


# -- timeout messages say which wait ran out ----------------------------------------------------------------


def test_no_answer_after_connecting_says_so(server, tmp_path):
    url = server.serve("a.ckpt", make_blob(SIZE), delay=3.0)
    with pytest.raises(DownloadError) as exc:
        download([url], tmp_path / "a.ckpt", timeout=0.3)
    assert exc.value.reasons == [f"{url} -> timed out after 0.3 s without data: the server accepted the connection but sent no answer"]


def test_a_stall_mid_file_says_how_far_it_got(server, tmp_path, monkeypatch):
    import essence.weights.download as dl

    monkeypatch.setattr(dl, "MAX_RESUMES", 0)
    url = server.serve("a.ckpt", make_blob(SIZE), stall_after=20_000, stall_for=3.0)
    with pytest.raises(DownloadError) as exc:
        download([url], tmp_path / "a.ckpt", timeout=0.4)
    assert "timed out after 0.4 s without data after" in str(exc.value) and "the server stopped sending" in str(exc.value)


def test_a_refused_connection_is_not_called_a_timeout(tmp_path):
    with pytest.raises(DownloadError) as exc:
        download(["http://127.0.0.1:9/x"], tmp_path / "a.ckpt", timeout=0.3)
    assert "connection refused" in str(exc.value) and "timed out" not in str(exc.value)
