"""The built-in aligners: FFHQ face alignment (``ffhq-dlib``, ``ffhq-mediapipe``) and a centre crop.

- :mod:`.geometry`: the FFHQ crop (eye and mouth points -> an oriented square -> a padded, blurred-border
  square crop at the generator's resolution) and the centre crop; numpy and PIL only.
- :mod:`.photos`: loading user photos safely (EXIF orientation, any mode to RGB, bomb and FIFO guards,
  huge images downscaled while decoding).
- :mod:`.dlib_landmarks`: ``ffhq-dlib``, dlib's HOG detector and 68-point model (the points FFHQ was
  made with); extra ``photos``; the model's asset record is ``assets.json``.
- :mod:`.mediapipe_landmarks`: ``ffhq-mediapipe``, MediaPipe's face detector and FaceMesh points mapped
  to dlib's eye and mouth points (Apache-2.0, faster); extra ``mediapipe``.

No module here imports dlib or mediapipe at import time: the aligners' constructors do.
"""
