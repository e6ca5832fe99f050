"""Shared fixtures: a private Mosquitto with the project's no-drop config."""

import pytest

from efence.mosquitto import private_mosquitto


@pytest.fixture(scope="session")
def mosquitto_url():
    """A real Mosquitto on a free loopback port, configured never to drop an agent's messages."""
    with private_mosquitto() as url:
        yield url
