"""download(): streamed, resumable, checksummed, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from weights_support import make_blob, server, sha256  # noqa: F401  (server is a fixture)

from essence.weights import download as dl
from essence.weights.download import DownloadError, download, part_path

SIZE = 200_000


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_streams_checks_and_reports_progress(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data)
    calls = []
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data), size=SIZE, progress=lambda d, t: calls.append((d, t)))
    assert got.path.read_bytes() == data
    assert (got.url, got.sha256, got.size) == (url, sha256(data), SIZE)
    assert calls[0] == (0, SIZE) and calls[-1] == (SIZE, SIZE)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert len(calls) > 2  # streamed in chunks, not read at once
    assert leftovers(tmp_path) == ["a.ckpt"]


def test_resumes_with_range_after_the_connection_is_cut(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, cut_after=70_000)
    calls = []
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data), progress=lambda d, t: calls.append(d))
    assert got.path.read_bytes() == data
    reqs = server.requests("a.ckpt")
    assert [r["range"] for r in reqs] == [None, "bytes=70000-"]
    assert reqs[1]["if_range"]  # resumes only if the file did not change (ETag)
    assert max(calls) == SIZE and 70_000 in calls


def test_server_that_ignores_range_gets_a_fresh_download(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, cut_after=50_000, ignore_range=True)
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data))
    assert got.path.read_bytes() == data
    assert [r["range"] for r in server.requests("a.ckpt")] == [None, "bytes=50000-"]


def test_file_changed_on_the_server_restarts_instead_of_mixing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_RESUMES", 0)
    old, new = make_blob(SIZE, seed=1), make_blob(SIZE, seed=2)
    url = server.serve("a.ckpt", old, cut_after=60_000)
    with pytest.raises(DownloadError, match="connection closed after 60000 of 200000 bytes"):
        download([url], tmp_path / "a.ckpt")  # no SHA256 known: only the ETag protects the resume
    assert part_path(tmp_path / "a.ckpt").stat().st_size == 60_000
    server.serve("a.ckpt", new)
    got = download([url], tmp_path / "a.ckpt")
    assert got.path.read_bytes() == new and got.sha256 == sha256(new)


def test_complete_partial_file_left_by_a_killed_process_is_not_fetched_again(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data)
    part_path(tmp_path / "a.ckpt").write_bytes(data)
    (tmp_path / "a.ckpt.part.json").write_text(f'{{"url": "{url}"}}')  # written before the first byte
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data), size=SIZE)
    assert got.path.read_bytes() == data
    assert server.requests("a.ckpt") == []


def test_out_of_range_partial_restarts_from_zero(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data)
    part_path(tmp_path / "a.ckpt").write_bytes(data + b"junk")  # longer than the file: 416
    (tmp_path / "a.ckpt.part.json").write_text(f'{{"url": "{url}"}}')
    got = download([url], tmp_path / "a.ckpt")
    assert got.path.read_bytes() == data
    assert [r["range"] for r in server.requests("a.ckpt")] == [f"bytes={SIZE + 4}-", None]


def test_wrong_checksum_is_rejected_and_nothing_is_left(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data)
    with pytest.raises(DownloadError, match=f"wrong SHA256 {sha256(data)}, expected {'0' * 64}"):
        download([url], tmp_path / "a.ckpt", sha256="0" * 64)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream"])
def test_html_page_with_status_200_is_rejected(server, tmp_path, content_type):
    from weights_support import HTML_PAGE

    url = server.serve("a.ckpt", HTML_PAGE, content_type=content_type)
    with pytest.raises(DownloadError, match="HTML page instead of the file"):
        download([url], tmp_path / "a.ckpt")
    assert leftovers(tmp_path) == []


def test_truncated_file_is_rejected(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data[:-1000])  # the server honestly serves a short file
    with pytest.raises(DownloadError, match=f"the server has {SIZE - 1000} bytes, expected {SIZE}"):
        download([url], tmp_path / "a.ckpt", size=SIZE)
    assert leftovers(tmp_path) == []


def test_connection_that_keeps_dropping_fails_and_keeps_the_partial_file(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_RESUMES", 2)
    monkeypatch.setattr(dl, "RESUME_BACKOFF", 0.0)
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, cut_after=30_000, times=99)
    with pytest.raises(DownloadError, match="connection closed after .* the next try resumes it"):
        download([url], tmp_path / "a.ckpt", sha256=sha256(data))
    assert not (tmp_path / "a.ckpt").exists()
    assert part_path(tmp_path / "a.ckpt").stat().st_size == 90_000  # three cuts of 30 kB
    server.serve("a.ckpt", data)  # the network is fine again
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data))
    assert got.path.read_bytes() == data
    assert server.requests("a.ckpt")[-1]["range"] == "bytes=90000-"


def test_404_is_a_clear_error(server, tmp_path):
    url = server.url("missing.ckpt")
    with pytest.raises(DownloadError, match=r"missing.ckpt -> HTTP 404 Not Found") as exc:
        download([url], tmp_path / "a.ckpt")
    assert exc.value.reasons == [f"{url} -> HTTP 404 Not Found"]


def test_server_that_never_answers_times_out(server, tmp_path):
    url = server.serve("a.ckpt", make_blob(SIZE), delay=3.0)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"timed out after 0.3 s"):
        download([url], tmp_path / "a.ckpt", timeout=0.3)
    assert time.monotonic() - start < 2.5


def test_server_that_stalls_mid_file_times_out_then_resumes(server, tmp_path):
    data = make_blob(SIZE)
    url = server.serve("a.ckpt", data, stall_after=80_000, stall_for=3.0)
    got = download([url], tmp_path / "a.ckpt", sha256=sha256(data), timeout=0.6)
    assert got.path.read_bytes() == data
    assert [r["range"] for r in server.requests("a.ckpt")] == [None, "bytes=80000-"]


def test_mirrors_are_tried_in_turn(server, tmp_path):
    from weights_support import HTML_PAGE

    data = make_blob(SIZE)
    urls = [
        server.url("gone.ckpt"),
        server.serve("quota.ckpt", HTML_PAGE, content_type="text/html"),
        server.serve("bad.ckpt", make_blob(SIZE, seed=9)),
        server.serve("good.ckpt", data),
    ]
    got = download(urls, tmp_path / "a.ckpt", sha256=sha256(data), size=SIZE)
    assert got.url == urls[3] and got.path.read_bytes() == data
    assert leftovers(tmp_path) == ["a.ckpt"]


def test_all_mirrors_failing_lists_a_reason_for_each(server, tmp_path):
    urls = [server.url("gone.ckpt"), server.serve("slow.ckpt", b"x", delay=3.0), "http://127.0.0.1:9/refused"]
    with pytest.raises(DownloadError) as exc:
        download(urls, tmp_path / "a.ckpt", timeout=0.3)
    assert exc.value.reasons == [
        f"{urls[0]} -> HTTP 404 Not Found",
        f"{urls[1]} -> timed out after 0.3 s without data: the server accepted the connection but sent no answer",
        f"{urls[2]} -> connection refused",
    ]
    assert "\n" not in str(exc.value)
    assert leftovers(tmp_path) == []


def test_unwritable_destination_is_a_clear_error(server, tmp_path):
    url = server.serve("a.ckpt", make_blob(SIZE))
    (tmp_path / "file").write_text("")
    with pytest.raises(dl.WeightsError, match=r"Could not write .*a.ckpt.part: .*ESSENCE_HOME"):
        download([url], tmp_path / "file" / "a.ckpt")
