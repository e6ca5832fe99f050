"""Sans-I/O codecs of the serial gate devices: bytes in, frames (or `FrameError` values) out, and back.

One module per protocol (see docs/DEVICES.md and ../shared/PROTOCOLS.md): `toledo`, `yaohua`, `sma`,
`chafon`, `em4100`, `ascii_epc`, `led_text`. Each decoder has `feed(data) -> list[Frame | FrameError]`,
never raises on any input and resynchronises after garbage; each module has the encoder the simulators use.
No module here opens a port, sleeps or reads a clock.
"""

from edge_agent.codecs.common import FrameError

__all__ = ["FrameError"]
