"""The crops generators expect, from a photo: FFHQ face alignment and a centre crop (numpy and PIL only).

FFHQ alignment, written from the FFHQ dataset's published description (Karras et al., "A Style-Based
Generator Architecture for GANs", and the dataset's README):

1. From dlib's 68 landmarks take the eye centres (means of points 36-41 and 42-47) and the mouth corners
   (48 and 54). ``eye_to_eye`` joins the eye centres, ``eye_to_mouth`` joins their midpoint to the
   mouth corners' midpoint.
2. The crop's x axis is ``eye_to_eye`` minus ``eye_to_mouth`` turned by 90 degrees (so both the eye
   line and the face's vertical axis set the roll), normalised and scaled to half the crop's side,
   ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``; the y axis is x turned by 90 degrees; the centre
   lies 0.1 ``eye_to_mouth`` below the eyes' midpoint. The quad is ``[c-x-y, c-x+y, c+x+y, c+x-y]``
   (upper left, lower left, lower right, upper right) and its side ``qsize = 2|x|``.
3. Shrink: when ``qsize`` is more than twice the output size, the photo is first downscaled by the
   integer factor ``floor(qsize / output / 2)``.
4. Crop the photo to the quad's bounding box plus a border of ``max(rint(0.1 qsize), 3)`` pixels.
5. Pad where the quad (plus border) leaves the photo: reflect-pad by at least ``rint(0.3 qsize)``, blur
   the padding (Gaussian, sigma ``0.02 qsize``, fully blurred from a third of the padding inwards of
   the edge) and fade it to the median colour towards the outer edge, so no hard mirror seam shows.
6. Sample the quad into a square of the transform size with a bilinear quad transform, then resize to
   the output with an antialiasing (Lanczos) filter. FFHQ transforms to 4096 px; we transform to the
   smallest multiple of the output size that holds every source pixel of the quad (at most
   ``transform_size``): the same supersampling where it matters, far less work at small outputs.

Unlike the original recipe, the quad is carried through steps 3-5 in continuous pixel coordinates (a
pixel's centre at +0.5), so the shrink keeps the geometry exact; :func:`photo_to_crop` therefore tells
where any photo point lands in the crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from essence import AlignedFace, EssenceError, Face

#: dlib's 68-point indices FFHQ alignment reads: the eye contours and the mouth corners.
EYE_LEFT = tuple(range(36, 42))  # the eye on the photo's left (the subject's right eye)
EYE_RIGHT = tuple(range(42, 48))
MOUTH_LEFT, MOUTH_RIGHT = 48, 54
NEEDED_POINTS = EYE_LEFT + EYE_RIGHT + (MOUTH_LEFT, MOUTH_RIGHT)

#: Rows processed at once while padding (keeps the float32 working set small for huge crops).
_BAND_ROWS = 256


def key_points(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The four points FFHQ alignment uses, as ``(x, y)`` arrays: ``eye_left``, ``eye_right`` (the eye
    centres, on the photo's left and right), ``mouth_left``, ``mouth_right`` (the mouth corners)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 68:
        raise EssenceError(f"Landmarks must be a (68, 2) array of (x, y) points, got shape {lm.shape}.")
    if not np.isfinite(lm[list(NEEDED_POINTS)]).all():
        raise EssenceError("Landmarks lack the eye points 36-47 or the mouth corners 48 and 54 (NaN found).")
    return {
        "eye_left": lm[list(EYE_LEFT)].mean(axis=0),
        "eye_right": lm[list(EYE_RIGHT)].mean(axis=0),
        "mouth_left": lm[MOUTH_LEFT].copy(),
        "mouth_right": lm[MOUTH_RIGHT].copy(),
    }


def _turn(v: np.ndarray) -> np.ndarray:
    """``v`` turned by 90 degrees in image coordinates (y down): (x, y) -> (-y, x)."""
    return np.array([-v[1], v[0]])


def ffhq_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFHQ crop's centre ``c`` and half-axes ``x``, ``y`` (photo pixels) for a face's landmarks."""
    p = key_points(landmarks)
    eye_avg = (p["eye_left"] + p["eye_right"]) / 2
    eye_to_eye = p["eye_right"] - p["eye_left"]
    mouth_avg = (p["mouth_left"] + p["mouth_right"]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - _turn(eye_to_mouth)
    length = math.hypot(*x)
    half = max(2.0 * math.hypot(*eye_to_eye), 1.8 * math.hypot(*eye_to_mouth))
    if length < 1e-9 or half < 1e-9:
        raise EssenceError("The eye and mouth points coincide: these landmarks do not describe a face.")
    x = x / length * half
    y = _turn(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return c, x, y


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The photo quad ``(4, 2)`` FFHQ alignment maps to the crop: upper left, lower left, lower right,
    upper right corners, in the landmarks' pixel coordinates."""
    c, x, y = ffhq_frame(landmarks)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_side(quad: np.ndarray) -> float:
    """The side of an FFHQ quad in photo pixels (FFHQ's ``qsize``)."""
    q = np.asarray(quad, dtype=np.float64)
    return float(math.hypot(*(q[3] - q[0])))


def photo_to_crop(points: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """Where photo points ``(n, 2)`` land in the ``resolution`` crop made from ``quad``, in the same
    pixel-index convention as the landmarks (a pixel's centre at its integer index)."""
    q = np.asarray(quad, dtype=np.float64)
    axes = np.stack([q[3] - q[0], q[1] - q[0]], axis=1)  # columns: the crop's x and y edges
    rel = np.asarray(points, dtype=np.float64).reshape(-1, 2) - q[0]
    frac = np.linalg.solve(axes, rel.T).T  # 0..1 across the crop, continuous coordinates
    return frac * resolution - 0.5


def crop_to_photo(points: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """The inverse of :func:`photo_to_crop`: crop pixels ``(n, 2)`` -> photo pixels."""
    q = np.asarray(quad, dtype=np.float64)
    frac = (np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5) / resolution
    return q[0] + frac[:, :1] * (q[3] - q[0]) + frac[:, 1:] * (q[1] - q[0])


def ffhq_eye_positions(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """Where FFHQ alignment puts this face's two eye centres in a ``resolution`` crop, ``(2, 2)``."""
    p = key_points(landmarks)
    return photo_to_crop(np.stack([p["eye_left"], p["eye_right"]]), ffhq_quad(landmarks), resolution)


def ffhq_crop(
    image: Image.Image,
    landmarks: np.ndarray,
    resolution: int,
    *,
    transform_size: int = 4096,
    padding: bool = True,
) -> tuple[Image.Image, np.ndarray]:
    """The FFHQ-aligned crop of the face with ``landmarks`` in ``image``: an RGB ``resolution`` square,
    and the photo quad it was sampled from (see the module's docstring for the recipe)."""
    if resolution < 1:
        raise EssenceError(f"The crop's resolution must be at least 1 pixel, got {resolution}.")
    quad = ffhq_quad(landmarks)
    img = image if image.mode == "RGB" else image.convert("RGB")
    corners = quad + 0.5  # continuous coordinates: pixel i covers [i, i + 1)
    qsize = quad_side(quad)

    shrink = math.floor(qsize / resolution * 0.5)
    if shrink > 1:
        w, h = img.size
        size = (max(1, round(w / shrink)), max(1, round(h / shrink)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        corners = corners * np.array([size[0] / w, size[1] / h])
        qsize *= size[0] / w

    border = max(round(qsize * 0.1), 3)
    w, h = img.size
    lo = np.floor(corners.min(axis=0)).astype(int)
    hi = np.ceil(corners.max(axis=0)).astype(int)
    box = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, w), min(hi[1] + border, h))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise EssenceError("The face's crop lies outside the photo (landmarks outside the image?).")
    if box != (0, 0, w, h):
        img = img.crop(box)
        corners = corners - np.array(box[:2])

    w, h = img.size
    lo = np.floor(corners.min(axis=0)).astype(int)
    hi = np.ceil(corners.max(axis=0)).astype(int)
    pad = (max(border - lo[0], 0), max(border - lo[1], 0), max(hi[0] - w + border, 0), max(hi[1] - h + border, 0))
    if padding and max(pad) > border - 4:
        least = round(qsize * 0.3)
        pad = tuple(max(p, least) for p in pad)
        img = pad_with_blurred_border(img, pad, qsize)
        corners = corners + np.array(pad[:2])

    size = min(transform_size, resolution * max(1, math.ceil(qsize / resolution)))
    out = img.transform(
        (size, size), Image.Transform.QUAD, tuple(corners.flatten().tolist()), Image.Resampling.BILINEAR
    )
    if size != resolution:
        out = out.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return out, quad


def pad_with_blurred_border(img: Image.Image, pad: Sequence[int], qsize: float) -> Image.Image:
    """``img`` reflect-padded by ``pad`` = (left, top, right, bottom) pixels, the padding blurred and faded
    to the median colour towards the outer edges (FFHQ's padding; works in row bands)."""
    left, top, right, bottom = (int(p) for p in pad)
    arr = np.asarray(img.convert("RGB"))
    mode = "reflect" if min(arr.shape[:2]) > 1 else "edge"
    padded = np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode=mode)
    height, width = padded.shape[:2]
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(qsize * 0.02)))

    # How far into the padding each pixel is: 0 at the photo's edge (negative inside), 1 at the outer edge.
    def ramp(n: int, before: int, after: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        return 1.0 - np.minimum(i / max(before, 1), (n - 1 - i) / max(after, 1))

    across, down = ramp(width, left, right), ramp(height, top, bottom)

    def blend(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        mask = np.maximum(across[None, :], down[rows, None])[..., None]
        band = padded[rows].astype(np.float32)
        band += (blurred[rows].astype(np.float32) - band) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        return band, mask

    bands = [slice(y, min(y + _BAND_ROWS, height)) for y in range(0, height, _BAND_ROWS)]
    counts = np.zeros((3, 256), dtype=np.int64)
    for rows in bands:
        band, _ = blend(rows)
        values = np.clip(np.rint(band), 0, 255).astype(np.intp).reshape(-1, 3)
        for c in range(3):
            counts[c] += np.bincount(values[:, c], minlength=256)
    half = counts[0].sum() / 2.0
    median = np.array([np.searchsorted(np.cumsum(counts[c]), half) for c in range(3)], dtype=np.float32)

    out = np.empty_like(padded)
    for rows in bands:
        band, mask = blend(rows)
        band += (median - band) * np.clip(mask, 0.0, 1.0)
        out[rows] = np.clip(np.rint(band), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def downscaled_copy(image: Image.Image, max_side: int | None) -> tuple[Image.Image, float]:
    """``image`` as RGB with its longer side at most ``max_side`` (antialiased), and the scale back:
    a point ``p`` of the copy is ``p * scale`` in ``image`` (continuous coordinates)."""
    img = image if image.mode == "RGB" else image.convert("RGB")
    if not max_side or max(img.size) <= max_side:
        return img, 1.0
    k = max(img.size) / max_side
    size = (max(1, round(img.width / k)), max(1, round(img.height / k)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), img.width / size[0]


def source_name(image: Image.Image) -> str:
    """How messages name a photo: its file (set by :func:`.photos.load_photo`), else "the photo"."""
    path = image.info.get("essence.source") if hasattr(image, "info") else None
    return str(path) if path else "the photo"


def align_faces(
    image: Image.Image,
    faces: Sequence[Face],
    resolution: int,
    *,
    all_faces: bool = False,
    transform_size: int = 4096,
    padding: bool = True,
    backend: str = "",
) -> list[AlignedFace]:
    """FFHQ crops of ``faces`` (largest first) in ``image``: the first only, or every one with
    ``all_faces``. No face is an EssenceError naming the photo; a face smaller than ``resolution`` and
    faces left out are warnings on the crops."""
    name = source_name(image)
    if not faces:
        by = f" by {backend}" if backend else ""
        raise EssenceError(
            f"No face found in {name}{by}: use a photo with a frontal, unobstructed face of at least "
            "about 80 pixels, or try the other aligner."
        )
    chosen = list(faces) if all_faces else list(faces[:1])
    shared = []
    if not all_faces and len(faces) > 1:
        shared.append(f"{len(faces)} faces found in {name}; aligned the largest (--all-faces aligns every one).")
    crops = []
    for face in chosen:
        crop, quad = ffhq_crop(image, face.landmarks, resolution, transform_size=transform_size, padding=padding)
        warnings = list(shared)
        side = quad_side(quad)
        if side < resolution:
            x0, y0 = face.box[0], face.box[1]
            warnings.append(
                f"The face at ({x0:.0f}, {y0:.0f}) in {name} spans {side:.0f} px, less than the generator's "
                f"{resolution} px: its crop is upscaled and will look soft."
            )
        crops.append(AlignedFace(image=crop, resolution=resolution, face=face, quad=quad, warnings=warnings))
    return crops
