"""Every registered component, at its tiny config, meets the shared contract (essence.testing)."""

from __future__ import annotations

import pytest

import essence
from essence.testing import check_component

REGISTRATIONS = [r for regs in essence.list_components().values() for r in regs]


@pytest.mark.parametrize("registration", REGISTRATIONS, ids=lambda r: f"{r.kind}:{r.name}")
def test_component_contract(registration, monkeypatch):
    # A component whose tiny config still needs a real file (dlib's landmark model has no tiny form) is
    # checked where that file is in the cache; the test never downloads it.
    monkeypatch.setenv("ESSENCE_OFFLINE", "1")
    try:
        check_component(registration)
    except essence.MissingExtraError as exc:  # an optional backend that is not installed here
        pytest.skip(str(exc))
    except essence.WeightsError as exc:
        if "offline mode is on" not in str(exc):
            raise
        pytest.skip(f"needs weights that are not in the cache: {exc}")


def test_every_registration_declares_a_tiny_config():
    missing = [f"{r.kind} {r.name}" for r in REGISTRATIONS if r.tiny is None]
    assert not missing, f"no tiny config: {missing}"


def test_the_checker_catches_a_broken_loss():
    with pytest.raises(AssertionError, match="scalar"):
        essence.testing.check_loss(lambda ctx: ctx.shifted)  # not a scalar


class Resize(essence.Aligner):
    alignment = "none"

    def align(self, image, resolution, *, all_faces=False):
        return [essence.AlignedFace(image.convert("RGB").resize((resolution, resolution)), resolution)]


class MeanLatent(essence.Inverter):
    """Every image -> the generator's mean latent (a valid, useless inverter)."""

    def invert(self, images, generator, *, callback=None):
        return generator.mean_w[:, None].repeat(images.shape[0], generator.num_ws, 1)


def test_the_aligner_and_inverter_checks_pass_good_ones_and_catch_bad_ones():
    essence.testing.check_aligner(Resize())
    essence.testing.check_inverter(MeanLatent())

    class WrongSize(Resize):
        def align(self, image, resolution, *, all_faces=False):
            return [essence.AlignedFace(image.convert("RGB"), resolution)]

    with pytest.raises(AssertionError, match="a crop is"):
        essence.testing.check_aligner(WrongSize())

    class OneRow(MeanLatent):
        def invert(self, images, generator, *, callback=None):
            return super().invert(images, generator)[:, :1]

    with pytest.raises(AssertionError, match="invert gave"):
        essence.testing.check_inverter(OneRow())

    class FaceOnly(Resize):
        alignment = "ffhq"

        def align(self, image, resolution, *, all_faces=False):
            raise essence.EssenceError("No face found in the photo.")

    essence.testing.check_aligner(FaceOnly())  # a face aligner may refuse a photo without a face
