"""Hypothesis fuzzing of every serial parser: random bytes, mutated worked frames, arbitrary chunking.

Properties: a decoder never raises; it only yields frames or `FrameError`s; a checked protocol never
turns a corrupted frame into a different frame and finds the next good frame again; and the weighbridge
logic never reports a stable weight that a corrupted or injected frame made up.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.codecs import ascii_epc, chafon, em4100, led_text, sma, toledo, yaohua
from edge_agent.codecs.common import FrameError
from edge_agent.drivers.weighbridge import WeighbridgeLogic, sample_of
from firmware_configs.devices import WeighbridgeConfig

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECODERS = {
    "toledo": lambda: toledo.ToledoDecoder(with_checksum=True),
    "toledo-nocheck": lambda: toledo.ToledoDecoder(with_checksum=False),
    "yaohua": yaohua.YaohuaDecoder,
    "yaohua-reversed": yaohua.YaohuaReversedDecoder,
    "yaohua-request": yaohua.YaohuaRequestDecoder,
    "yaohua-response": yaohua.YaohuaResponseDecoder,
    "sma": sma.SmaDecoder,
    "sma-command": sma.SmaCommandDecoder,
    "chafon": chafon.ChafonDecoder,
    "chafon-command": lambda: chafon.ChafonDecoder(responses=False),
    "em4100": em4100.Em4100Decoder,
    "em4100-16-sum": lambda: em4100.Em4100Decoder(frame_length=16, check="sum"),
    "ascii-epc": ascii_epc.AsciiEpcDecoder,
    "led": led_text.LedTextDecoder,
    "led-reply": led_text.LedReplyDecoder,
}

SAMPLES = {
    "toledo": toledo.encode(toledo.ToledoFrame(displayed=12340, tare=40, motion=True)),
    "toledo-nocheck": toledo.encode(toledo.ToledoFrame(displayed=12340), with_checksum=False),
    "yaohua": yaohua.encode(yaohua.YaohuaFrame(12340.0)),
    "yaohua-reversed": yaohua.encode_reversed(yaohua.YaohuaFrame(12340.0)),
    "yaohua-request": yaohua.encode_request(1, "B"),
    "yaohua-response": yaohua.encode_response(yaohua.YaohuaResponse(1, "B", 12340.0)),
    "sma": sma.encode(sma.SmaFrame(12340.0)),
    "sma-command": sma.encode_command("W"),
    "chafon": chafon.encode_response(
        chafon.ChafonResponse(
            0, 1, 3, chafon.inventory_data([chafon.InventoryTag(b"\xe2\x80" * 6, 1, 0x60)], antenna=1)
        )
    ),
    "chafon-command": chafon.encode_command(chafon.ChafonCommand(0, 1)),
    "em4100": em4100.encode(em4100.Em4100Frame("13005D1DA5")),
    "em4100-16-sum": em4100.encode(em4100.Em4100Frame("13005D1DA5"), frame_length=16, check="sum"),
    "ascii-epc": ascii_epc.encode(ascii_epc.EpcLine("E2801160600002090AD5C1F3")),
    "led": led_text.encode(led_text.LedText(1, "沪A12345 请通行", "G")),
    "led-reply": b"\x06",
}
CHECKED = [
    "toledo",
    "yaohua",
    "yaohua-request",
    "yaohua-response",
    "chafon",
    "chafon-command",
    "em4100",
    "em4100-16-sum",
    "led",
]

names = st.sampled_from(sorted(DECODERS))


def decode_all(name: str, chunks: list[bytes]) -> list:
    decoder = DECODERS[name]()
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


@FUZZ
@given(names, st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_never_raise(name, chunks):
    for item in decode_all(name, chunks):
        assert item is not None
        if isinstance(item, FrameError):
            assert isinstance(item.reason, str) and isinstance(item.raw, bytes)


@FUZZ
@given(names, st.binary(max_size=40), st.binary(max_size=40), st.lists(st.integers(0, 400), max_size=6))
def test_good_frames_survive_garbage_and_any_chunking(name, before, between, cuts):
    good = SAMPLES[name]
    expected = [x for x in decode_all(name, [good]) if not isinstance(x, FrameError)]
    assert len(expected) == 1
    stream = before + good + between + good + good
    whole = [x for x in decode_all(name, [stream]) if not isinstance(x, FrameError)]
    chunked = [x for x in decode_all(name, split(stream, cuts)) if not isinstance(x, FrameError)]
    assert whole == chunked
    assert whole[-1] == expected[0]  # after garbage the decoder is back in step by the last copy
    if name in CHECKED and not before and not between:
        assert whole == expected * 3


@FUZZ
@given(st.sampled_from(CHECKED), st.data())
def test_checked_protocols_never_accept_a_corrupted_frame(name, data):
    good = SAMPLES[name]
    [expected] = decode_all(name, [good])
    mutated = bytearray(good)
    # XOR and 7-bit-sum checks catch every single-bit error but not every double one (two flips in one
    # bit column cancel); CRC-16/MCRF4XX catches every error of up to 3 bits in frames this short.
    flips = data.draw(st.integers(1, 3)) if name.startswith("chafon") else 1
    for _ in range(flips):
        i = data.draw(st.integers(0, len(good) - 1))
        mutated[i] ^= 1 << data.draw(st.integers(0, 7))
    out = decode_all(name, [bytes(mutated) + good + good])
    frames = [x for x in out if not isinstance(x, FrameError)]
    # a frame is either rejected or (a flip the protocol ignores, such as Toledo's parity bit 7, or an
    # ASCII-hex digit flipped to the other case) decodes to the very same frame
    assert all(f == expected for f in frames)
    assert frames[-1] == expected
    if name.startswith("chafon") and bytes(mutated) != good:
        assert len(frames) == 2  # a CRC catches every flip of up to 3 bits here


@FUZZ
@given(st.binary(max_size=80), st.integers(0, 255))
def test_parse_inventory_never_raises(data, status):
    result = chafon.parse_inventory(chafon.ChafonResponse(0, chafon.CMD_INVENTORY, status, data))
    assert isinstance(result, (list, FrameError))


# ----------------------------------------------------------------------------- never a false stable weight
WB = WeighbridgeConfig(
    id="wb",
    type="weighbridge",
    serial={"port": "/dev/null"},
    protocol="toledo",
    stable_window_s=1.0,
    stable_tolerance_kg=20,
)
ENCODERS = {
    "toledo": (
        lambda kg, motion: toledo.encode(toledo.ToledoFrame(displayed=kg, motion=motion)),
        DECODERS["toledo"],
    ),
    "toledo-nocheck": (
        lambda kg, motion: toledo.encode(
            toledo.ToledoFrame(displayed=kg, motion=motion), with_checksum=False
        ),
        DECODERS["toledo-nocheck"],
    ),
    "yaohua": (lambda kg, motion: yaohua.encode(yaohua.YaohuaFrame(float(kg))), yaohua.YaohuaDecoder),
    "yaohua-reversed": (
        lambda kg, motion: yaohua.encode_reversed(yaohua.YaohuaFrame(float(kg))),
        yaohua.YaohuaReversedDecoder,
    ),
    "sma": (lambda kg, motion: sma.encode(sma.SmaFrame(float(kg), motion=motion)), sma.SmaDecoder),
}

segments = st.lists(
    st.tuples(st.integers(0, 60_000), st.integers(1, 25), st.booleans()), min_size=1, max_size=6
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ENCODERS)), segments, st.data())
def test_corruption_never_yields_a_false_stable_weight(protocol, segs, data):
    encode, make_decoder = ENCODERS[protocol]
    frames = [(kg, motion) for kg, n, motion in segs for _ in range(n)]
    corrupt = set(data.draw(st.lists(st.integers(0, len(frames) - 1), max_size=4)))
    noise_at = dict(
        data.draw(
            st.lists(
                st.tuples(st.integers(0, len(frames) - 1), st.binary(min_size=1, max_size=12)), max_size=3
            )
        )
    )
    logic, decoder = WeighbridgeLogic(WB), make_decoder()
    sent: list[tuple[float, int]] = []
    for i, (kg, motion) in enumerate(frames):
        now = i * 0.1
        raw = bytearray(encode(kg, motion))
        if i in corrupt:
            j = data.draw(st.integers(0, len(raw) - 1))
            raw[j] ^= 1 << data.draw(st.integers(0, 7))
        sent.append((now, kg))
        for item in decoder.feed(noise_at.get(i, b"") + bytes(raw)):
            if isinstance(item, FrameError) or (sample := sample_of(item)) is None:
                continue
            reading = logic.on_sample(sample, now)
            if not reading.stable:
                continue
            genuine = [w for t, w in sent if now - WB.stable_window_s - 0.15 <= t <= now]
            assert any(abs(reading.gross_kg - w) <= WB.stable_tolerance_kg for w in genuine)
            if protocol in ("toledo", "yaohua") and not noise_at:
                assert reading.gross_kg == kg  # checked protocols: a stable weight is the true weight
            if protocol == "toledo" and not noise_at:
                assert not motion  # the indicator's motion flag alone vetoes stability
