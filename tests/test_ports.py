"""free_port: servers started by tests and the demo must not collide with outgoing connections."""

import socket

from efence.ports import _ephemeral_low, free_port


def test_free_ports_are_bindable_and_outside_the_ephemeral_range():
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 40  # spread at random, not handed out in sequence
    for port in list(ports)[:10]:
        assert port < _ephemeral_low()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_returned():
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        assert all(free_port() != taken for _ in range(300))
