"""The web page's photo handlers on the shipped toy models, called as the page calls them (no browser):
Apply with photo sources (the first time: align + invert; again: found by the files' hashes), a slider
move on them, the photos beside their reconstructions, and the Invert tab (inversion + the files of
`essence invert`), each the median of `--repeats` calls in one process.

    python benchmarks/bench_ui_photos.py [--photos 6] [--repeats 5] [--out results/ui_photos.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from essence.ui import apply as apply_tab
    from essence.ui.invert import invert_upload
    from essence.ui.photos import InversionCache
    from ui_support import sprite_photos, toy_run

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-ui-photos-"))
    run = toy_run(work / "runs" / "a", steps=3)
    names = tuple(f"photo_{k}.png" for k in range(args.photos))
    cache = apply_tab.GeneratorCache()
    apply_tab.load_applied(cache, run, count=1)  # the generator built once, as after the page's first Apply

    results: dict[str, float] = {}

    def fresh_apply() -> object:  # new photo files each time: nothing cached
        photos = sprite_photos(work / f"p{time.perf_counter_ns()}", names)
        return apply_tab.load_applied(cache, run, sources="photos", photos=photos, inversions=InversionCache())

    results["apply_photos_first_s"], applied = timed(fresh_apply, args.repeats)
    inversions = InversionCache()
    photos = sprite_photos(work / "same", names)
    apply_tab.load_applied(cache, run, sources="photos", photos=photos, inversions=inversions)
    results["apply_photos_again_s"], _ = timed(
        lambda: apply_tab.load_applied(cache, run, sources="photos", photos=photos, inversions=inversions), args.repeats
    )
    results["slider_move_s"], _ = timed(lambda: apply_tab.at_strength(cache, applied, 0.7), args.repeats)
    results["photo_view_s"], _ = timed(lambda: apply_tab.photo_view(cache, applied), args.repeats)
    results["invert_tab_first_s"], _ = timed(
        lambda: invert_upload(
            cache, InversionCache(), sprite_photos(work / f"i{time.perf_counter_ns()}", names), work / "dl",
            generator="toy-sprites",
        ),
        args.repeats,
    )
    results["invert_tab_again_s"], _ = timed(
        lambda: invert_upload(cache, inversions, photos, work / "dl2", generator="toy-sprites"), args.repeats
    )
    record = {"photos": args.photos, "repeats": args.repeats, "torch_threads": 1, **{k: round(v, 4) for k, v in results.items()}}
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
