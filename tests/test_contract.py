"""Every registered component, at its tiny config, meets the shared contract (essence.testing)."""

from __future__ import annotations

import pytest

import essence
from essence.testing import check_component

REGISTRATIONS = [r for regs in essence.list_components().values() for r in regs]


@pytest.mark.parametrize("registration", REGISTRATIONS, ids=lambda r: f"{r.kind}:{r.name}")
def test_component_contract(registration):
    check_component(registration)


def test_every_registration_declares_a_tiny_config():
    missing = [f"{r.kind} {r.name}" for r in REGISTRATIONS if r.tiny is None]
    assert not missing, f"no tiny config: {missing}"


def test_the_checker_catches_a_broken_loss():
    with pytest.raises(AssertionError, match="scalar"):
        essence.testing.check_loss(lambda ctx: ctx.shifted)  # not a scalar
