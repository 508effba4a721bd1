"""The suite keeps the network rule by itself: only loopback is reachable from a test (conftest.loopback_only)."""

from __future__ import annotations

import socket

import pytest


def test_a_public_address_is_unreachable_from_a_test():
    with pytest.raises(OSError, match="loopback-only"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(OSError, match="loopback-only"):
        socket.getaddrinfo("example.com", 443)


def test_loopback_still_works():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with server, socket.create_connection(server.getsockname(), timeout=5):
        assert socket.getaddrinfo("localhost", 80)
