"""Pick a free TCP port for a server another process will bind a moment later.

Asking the kernel for port 0 and closing the socket hands out an *ephemeral* port: the very range the
kernel also uses for outgoing connections, so on a busy machine (many test processes, MQTT clients) the
port is often taken again before the server binds it ("Address already in use"). Picking at random
below the ephemeral range avoids that whole class of collision; only two pickers choosing the same
number at the same moment remain, which the random spread makes rare.
"""

import random
import socket

_LOW, _HIGH = 20000, 32000  # below Linux's default ephemeral range (32768–60999)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that is free now and outside the kernel's ephemeral range."""
    high = min(_HIGH, _ephemeral_low() - 1)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(_LOW, high)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every pick taken: fall back to the kernel's choice
        s.bind((host, 0))
        return s.getsockname()[1]
