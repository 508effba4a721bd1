"""Built-in aligners: a photo -> the crop a generator expects (see :class:`essence.Aligner`).

``center-crop`` and ``resize`` (``simple.py``) need nothing but PIL. The FFHQ face aligners (``ffhq-dlib``,
``ffhq-mediapipe``) are the plugin in ``ffhq/``, behind the ``[photos]`` / ``[mediapipe]`` extras. Nothing heavy is imported until an aligner is built.
"""

from __future__ import annotations

import essence


def build_center_crop(config: essence.ComponentConfig) -> essence.Aligner:
    """The largest centred square, resized (alignment 'center': LSUN-style scene generators)."""
    from essence.plugins.aligners.simple import CenterCrop

    return CenterCrop()


def build_resize(config: essence.ComponentConfig) -> essence.Aligner:
    """The whole photo, resized (alignment 'none': generators of whole images, such as toy-sprites)."""
    from essence.plugins.aligners.simple import Resize

    return Resize()


@essence.hookimpl
def register_aligners(register):
    register("center-crop", build_center_crop, tiny={})
    register("resize", build_resize, tiny={})
