"""Ports for local servers: those asked for together never repeat."""

from __future__ import annotations

import socket

from loadtests.local_service import free_ports

# Asked for one at a time, 512 ports from the kernel's ephemeral range repeat one with a
# likelihood near 99% (one benchmark run lost a server to a repeat of two).
COUNT = 512


def test_ports_asked_for_together_are_distinct_and_free() -> None:
    ports = free_ports(COUNT)
    assert len(set(ports)) == COUNT
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nobody holds it any more
