"""``ffhq-dlib``: FFHQ alignment with the landmarks FFHQ itself was made with.

dlib's HOG frontal face detector finds the faces (on a copy of at most ``detect_side`` pixels, for
speed and bounded memory on large photos); its 68-point shape predictor then places the landmarks on
the full image inside each box; :func:`.geometry.ffhq_crop` makes the crop.

Needs the ``photos`` extra (``dlib-bin``, a prebuilt dlib wheel) and the 68-point model, found in this
order: an explicit ``predictor_path``; the copy inside an installed ``face_recognition_models``
package (located without importing it: that package needs ``pkg_resources``); the weights cache (asset
``dlib-shape-predictor-68``: downloaded or ``essence weights import``-ed as the published ``.bz2``,
decompressed once beside it). Mind the model's terms: it was trained on iBUG 300-W, whose licence
excludes commercial use (see ``assets.json``).
"""

from __future__ import annotations

import bz2
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from essence import AlignedFace, Aligner, EssenceError, Face, MissingExtraError, WeightsError

from .geometry import align_faces, downscaled_copy

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
ASSET_NAME = "dlib-shape-predictor-68"
ASSETS_FILE = Path(__file__).with_name("assets.json")
#: The 68-point model is 99.7 MB; a .bz2 that inflates beyond this is refused (a bzip2 bomb or the wrong file).
MAX_PREDICTOR_BYTES = 256 * 1024 * 1024
_BZ2_MAGIC = b"BZh"


def import_dlib() -> Any:
    """The dlib module, or a MissingExtraError naming the ``photos`` extra."""
    try:
        import dlib
    except ImportError:
        raise MissingExtraError("The ffhq-dlib aligner", "photos", ("dlib-bin",)) from None
    return dlib


def decompress_bz2(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, max_bytes: int = MAX_PREDICTOR_BYTES
) -> Path:
    """Inflate the bzip2 file ``src`` into ``dst`` in 1 MiB blocks (bounded memory), atomically: a
    partial output never sits at ``dst``. More than ``max_bytes`` of output, or a corrupt stream, is a
    WeightsError."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    written = 0
    try:
        with bz2.open(src, "rb") as inp, open(tmp, "wb") as out:
            while block := inp.read(1 << 20):
                written += len(block)
                if written > max_bytes:
                    raise WeightsError(
                        f"{src} inflates to more than {max_bytes / 2**20:.0f} MiB: not the dlib landmark model "
                        f"(a bzip2 bomb or the wrong file?)."
                    )
                out.write(block)
        os.replace(tmp, dst)
    except (OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"Cannot decompress {src}: {exc}. Is the download complete?") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _is_bz2(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(3) == _BZ2_MAGIC


def packaged_predictor() -> Path | None:
    """The 68-point model inside an installed ``face_recognition_models``, found without running it.

    ``importlib.util.find_spec`` of a top-level package locates it without executing its ``__init__``;
    the distribution's file list is the fallback."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    try:
        files = importlib.metadata.files("face_recognition_models") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == PREDICTOR_FILE:
            located = Path(str(f.locate()))
            if located.is_file():
                return located
    return None


def cached_predictor(*, offline: bool | None = None) -> Path:
    """The model from the weights cache (downloading the .bz2 unless offline), decompressed once."""
    import essence

    try:
        from essence.weights.assets import get_assets

        registered = ASSET_NAME in get_assets()
    except EssenceError:
        registered = False
    if registered:
        source = essence.resolve_weights(ASSET_NAME, offline=offline)
    else:  # not (yet) registered through a plugin hook: the same cache, from our own record
        from essence.weights.cache import pull

        source = pull(essence.load_assets(ASSETS_FILE)[0], offline=offline).path
    return usable_predictor(source)


def usable_predictor(path: Path) -> Path:
    """``path`` itself for a .dat model, or its decompressed copy beside it for a .bz2 (made once)."""
    if not _is_bz2(path):
        return path
    target = path.with_name(PREDICTOR_FILE)
    if target == path:  # a compressed file under the model's own name
        target = path.with_name("inflated-" + PREDICTOR_FILE)
    if target.is_file() and target.stat().st_mtime >= path.stat().st_mtime and target.stat().st_size > 0:
        return target
    try:
        return decompress_bz2(path, target)
    except PermissionError:
        raise WeightsError(
            f"Cannot write the decompressed model beside {path}: decompress it yourself (bunzip2) and pass its path."
        ) from None


def find_predictor(path: str | os.PathLike[str] | None = None, *, offline: bool | None = None) -> Path:
    """The 68-point model file: ``path``; else the copy in ``face_recognition_models``; else the cache."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise EssenceError(f"dlib landmark model not found: {p}")
        if _is_bz2(p):
            raise EssenceError(
                f"{p} is still bzip2-compressed: decompress it (bunzip2), or register it with "
                f"`essence weights import {ASSET_NAME} {p}`."
            )
        return p
    return packaged_predictor() or cached_predictor(offline=offline)


class DlibAligner(Aligner):
    """FFHQ alignment from dlib's HOG detector and 68-point landmarks (FFHQ's own points).

    ``upsample``: how often the detector doubles the (at most ``detect_side``) copy it searches, to find
    faces down to about 80 / 2**upsample pixels of that copy; ``min_score``: dlib's detection threshold
    adjustment (0 is dlib's default; higher drops weak detections, such as a face-like badge).
    """

    name = "ffhq-dlib"
    alignment = "ffhq"

    def __init__(
        self,
        predictor_path: str | os.PathLike[str] | None = None,
        upsample: int = 1,
        *,
        min_score: float = 0.0,
        detect_side: int | None = 1024,
        transform_size: int = 4096,
        padding: bool = True,
        offline: bool | None = None,
    ):
        self._dlib = import_dlib()
        if upsample < 0:
            raise EssenceError(f"upsample must be 0 or more, got {upsample}.")
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.detect_side = detect_side
        self.transform_size = transform_size
        self.padding = padding
        self.predictor_path = find_predictor(predictor_path, offline=offline)
        self._detector = self._dlib.get_frontal_face_detector()
        try:
            self._predictor = self._dlib.shape_predictor(str(self.predictor_path))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{self.predictor_path} is not a dlib shape predictor ({first}).") from None

    def detect(self, image: Image.Image) -> list[Face]:
        """Every frontal face dlib finds, largest first (ties: the higher detector score first)."""
        full = image if image.mode == "RGB" else image.convert("RGB")
        small, scale = downscaled_copy(full, self.detect_side)
        rects, scores, _ = self._detector.run(np.asarray(small), self.upsample, self.min_score)
        pixels = np.asarray(full)
        faces = []
        for rect, score in zip(rects, scores):
            box = (rect.left() * scale, rect.top() * scale, (rect.right() + 1) * scale, (rect.bottom() + 1) * scale)
            on_full = self._dlib.rectangle(
                round(box[0]),
                round(box[1]),
                max(round(box[0]), round(box[2]) - 1),
                max(round(box[1]), round(box[3]) - 1),
            )
            shape = self._predictor(pixels, on_full)
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append(Face(box=tuple(float(v) for v in box), landmarks=landmarks, score=float(score)))
        faces.sort(key=lambda f: (f.size, f.score), reverse=True)
        return faces

    def align(self, image: Image.Image, resolution: int, *, all_faces: bool = False) -> list[AlignedFace]:
        return align_faces(
            image,
            self.detect(image),
            resolution,
            all_faces=all_faces,
            transform_size=self.transform_size,
            padding=self.padding,
            backend=self.name,
        )
