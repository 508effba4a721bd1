"""benchmarks/quality.py runs end to end on a few targets and seeds, and writes its table and plot (the full
run is in docs/method.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(not (BENCHMARKS / "world_judges.safetensors").is_file(), reason="the world judges are not here")
def test_quality_benchmark_scores_every_method_over_seeds(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import quality

    out, png = tmp_path / "quality.json", tmp_path / "curves.png"
    args = ["--targets", "1", "--ood-targets", "1", "--heldout", "2", "--seeds", "2", "--steps", "2",
            "--blend-steps", "2", "--alphas", "1,1.5", "--blend-weights", "0.5,1"]
    assert quality.main([*args, "--out", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    summary, rows = result["summary"], result["rows"]
    clean = {"sources", "paper", "essence-in", "stylegan-blend", "clip-blend", "gatys"}
    sketch = {"sources", "paper-ood", "essence-ood", "stylegan-blend", "clip-blend", "gatys"}
    assert set(summary) == {f"clean/{m}" for m in clean} | {f"sketch/{m}" for m in sketch}
    # per seed: 2 targets x (sources, 2 presets x 2 alphas, 2 blend weights, CLIP blend, Gatys)
    assert len(rows) == 2 * 2 * (1 + 2 * 2 + 2 + 1 + 1)
    assert {r["seed"] for r in rows} == {0, 1}
    assert summary["clean/sources"]["identity_px"] == 0.0  # the unedited sources are their own identity reference
    ref = result["reference"]["clean"]
    e = summary["clean/stylegan-blend"]
    assert e["n"] == 2 and e["paired_n"] == 2 and f"essence_minus_{ref}" in e
    assert [p["x"] for p in e["curve"]] == [0.5, 1.0]
    assert [p["x"] for p in summary["clean/paper"]["curve"]] == [1.0, 1.5]
    for row in rows:
        assert 0.0 <= row["essence"] <= 1.0 and row["identity_px"] >= 0.0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "paired" in capsys.readouterr().out
    merged = tmp_path / "merged.json"
    assert quality.main(["--merge", str(out), "--out", str(merged)]) == 0
    assert json.loads(merged.read_text())["summary"] == summary
    sys.modules.pop("quality", None)
