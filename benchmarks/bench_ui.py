"""`essence ui`: how long it takes to serve its first page, and a toy optimisation through the page
(Debian's chromium via Playwright) against the same run with `essence run`, alternated in one process.

    python benchmarks/bench_ui.py [--steps 100] [--repeats 2] [--chromium /usr/bin/chromium]

Wall times: the page's from the click on "Find the direction" to "completed" on the page; the CLI's the
whole command (start, model build, optimisation, held-out check, run folder). "optimising" is the
run's own `seconds` from metrics.json (the steps alone), so the two can be compared without the start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "essence" / "plugins" / "toy" / "targets" / "in-domain.png"
ESSENCE = [sys.executable, "-m", "essence"]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(runs: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    proc = subprocess.Popen([*ESSENCE, "ui", "--port", str(port), "--runs", str(runs)], stderr=subprocess.DEVNULL)
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return proc, url, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("essence ui exited before serving a page")
            time.sleep(0.05)


def newest_run(runs: Path) -> Path:
    return max(runs.iterdir(), key=lambda p: p.stat().st_mtime)


def seconds(run: Path) -> float:
    return float(json.loads((run / "metrics.json").read_text())["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS for essence ui and essence run (less noise on a busy machine)"
    )
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from playwright.sync_api import sync_playwright

    print("load before:", os.getloadavg())
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    startups = []
    for k in range(args.repeats):
        proc, _, took = start_ui(work / f"probe-{k}")
        startups.append(took)
        proc.terminate()
        proc.wait()
    print("essence ui, start to first page served (s):", ", ".join(f"{t:.2f}" for t in startups))

    runs = work / "runs"
    proc, url, _ = start_ui(runs)
    rows = []
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(work / "profile"), executable_path=args.chromium, headless=True, args=ARGS
            )
            page = context.new_page()
            page.set_default_timeout(600_000)
            for k in range(args.repeats):
                page.goto(url)
                page.set_input_files("#target input[type=file]", str(TARGET))
                page.wait_for_selector("#target img")
                page.locator("#steps input").fill(str(args.steps))
                started = time.perf_counter()
                page.click("#find")
                page.wait_for_selector("#find-status:has-text('completed')")
                wall = time.perf_counter() - started
                rows.append(("page", k, wall, seconds(newest_run(runs))))

                out = work / f"cli-{k}"
                started = time.perf_counter()
                subprocess.run(
                    [
                        *ESSENCE,
                        "run",
                        "-g",
                        "toy-sprites",
                        "-e",
                        "toy-clip",
                        "-t",
                        str(TARGET),
                        "--steps",
                        str(args.steps),
                        "--out",
                        str(out),
                        "-q",
                    ],
                    check=True,
                )
                rows.append(("cli", k, time.perf_counter() - started, seconds(out)))
            context.close()
    finally:
        proc.terminate()
        proc.wait()
    print(f"{args.steps}-step toy optimisation (toy-sprites + toy-clip, in-domain target), threads {args.threads}:")
    print("how   try  wall s  optimising s")
    for how, k, wall, opt in rows:
        print(f"{how:5} {k:3}  {wall:6.2f}  {opt:6.2f}")
    for how in ("page", "cli"):
        walls = sorted(r[2] for r in rows if r[0] == how)
        opts = sorted(r[3] for r in rows if r[0] == how)
        print(
            f"{how}: wall min {walls[0]:.2f} median {walls[len(walls) // 2]:.2f}; "
            f"optimising min {opts[0]:.2f} median {opts[len(opts) // 2]:.2f}"
        )
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
