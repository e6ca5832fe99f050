"""Every worked frame of PROTOCOLS.md §1, §2, §3.1, §5.1, §5.2 for the serial codecs: decoded, and
re-encoded to the exact bytes; plus the format corners (7E1, leading blanks, status bits, resync)."""

import pytest

from edge_agent.codecs import ascii_epc, chafon, em4100, led_text, sma, toledo, yaohua
from edge_agent.codecs.common import FrameError, with_parity


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ----------------------------------------------------------------------------- Toledo §1
TOLEDO_WORKED = [
    ("02 2A 30 20 30 31 32 33 34 30 30 30 30 30 30 30 0D 2D", 12340.0, 0, False, False, 1),
    ("02 2A 38 20 30 31 32 33 34 30 30 30 30 30 30 30 0D 25", 12340.0, 0, True, False, 1),
    ("02 2A 31 20 30 30 38 30 30 30 30 30 34 33 34 30 0D 23", 8000.0, 4340, False, True, 1),
    ("02 32 30 20 30 30 30 30 30 30 30 30 30 30 30 30 0D 2F", 0.0, 0, False, False, 2),
]


@pytest.mark.parametrize(("hexframe", "weight", "tare", "motion", "net", "increment"), TOLEDO_WORKED)
def test_toledo_worked_frames(hexframe, weight, tare, motion, net, increment):
    raw = h(hexframe)
    [frame] = toledo.ToledoDecoder(with_checksum=True).feed(raw)
    assert isinstance(frame, toledo.ToledoFrame)
    assert (frame.weight, frame.tare, frame.motion, frame.net, frame.increment) == (
        weight,
        tare,
        motion,
        net,
        increment,
    )
    assert frame.unit == "kg" and frame.weight_kg == weight and not frame.negative
    assert toledo.encode(frame, with_checksum=True) == raw
    assert toledo.checksum(raw[:17]) == raw[17]


def test_toledo_without_checksum_and_with_7e1_parity_bits():
    raw = h(TOLEDO_WORKED[0][0])[:17]
    assert (
        toledo.ToledoDecoder(with_checksum=False).feed(raw * 2)
        == [toledo.ToledoDecoder(with_checksum=False).feed(raw)[0]] * 2
    )
    wire = with_parity(h(TOLEDO_WORKED[0][0]), "E")
    assert wire != h(TOLEDO_WORKED[0][0])  # some bytes carry a parity bit in bit 7
    assert all((b & 0x7F).bit_count() % 2 == (b >> 7) for b in wire)  # ... and it is even parity
    [frame] = toledo.ToledoDecoder().feed(wire)
    assert frame.weight == 12340.0
    assert toledo.encode(frame, parity="E") == wire


def test_toledo_leading_blanks_are_accepted_and_encoded():
    raw = toledo.encode(toledo.ToledoFrame(displayed=1440, tare=460), leading_spaces=True)
    assert raw[4:16] == b"  1440   460"
    [frame] = toledo.ToledoDecoder().feed(raw)
    assert (frame.displayed, frame.tare) == (1440, 460)
    bad = raw[:4] + b" 1 440" + raw[10:]  # a blank inside the number is not a leading zero
    bad = bad[:17] + bytes((toledo.checksum(bad[:17]),))
    assert isinstance(toledo.ToledoDecoder().feed(bad)[0], FrameError)


@pytest.mark.parametrize(
    ("line", "weight", "tare", "net", "motion", "unit"),
    [  # MT IND231 continuous lines, STX and CR stripped in the capture (PROTOCOLS.md §8)
        ("40    046   000", 0.46, 0.0, False, False, "kg"),
        ("49    072   046", 0.72, 0.46, True, True, "kg"),
        ("1!!  1440   460", 14400.0, 4600.0, True, False, "g"),
        ("2!1  1448   450", 1448.0, 450.0, True, False, "g"),
    ],
)
def test_toledo_ind231_captured_lines(line, weight, tare, net, motion, unit):
    [frame] = toledo.ToledoDecoder(with_checksum=False).feed(b"\x02" + line.encode() + b"\r")
    assert (frame.weight, frame.tare_weight, frame.net, frame.motion, frame.unit) == (
        weight,
        tare,
        net,
        motion,
        unit,
    )


def test_toledo_every_status_bit():
    frame = toledo.ToledoFrame(
        displayed=12345,
        tare=100,
        decimal_code=4,
        increment=5,
        net=True,
        negative=True,
        out_of_range=True,
        motion=True,
        unit="lb",
        power_up_not_zeroed=True,
        print_request=True,
        expanded=True,
    )
    raw = toledo.encode(frame)
    swa, swb, swc = raw[1:4]
    assert swa == 0x20 | 4 | 0x08 | 0x10
    assert swb == 0x20 | 0x01 | 0x02 | 0x04 | 0x08 | 0x40  # lb: bit 4 clear
    assert swc == 0x20 | 0x08 | 0x10
    [back] = toledo.ToledoDecoder().feed(raw)
    assert back == frame
    assert back.weight == -123.45 and back.tare_weight == 1.0
    assert back.weight_kg == pytest.approx(-123.45 * 0.45359237)


@pytest.mark.parametrize(
    ("code", "value"), [(0, 123400.0), (1, 12340.0), (2, 1234.0), (3, 123.4), (5, 1.234), (7, 0.01234)]
)
def test_toledo_decimal_point_codes(code, value):
    [frame] = toledo.ToledoDecoder().feed(
        toledo.encode(toledo.ToledoFrame(displayed=1234, decimal_code=code))
    )
    assert frame.weight == pytest.approx(value)


@pytest.mark.parametrize(
    ("unit", "kg"), [("kg", 500.0), ("g", 0.5), ("t", 500_000.0), ("oz", None), ("none", None)]
)
def test_toledo_units(unit, kg):
    [frame] = toledo.ToledoDecoder().feed(toledo.encode(toledo.ToledoFrame(displayed=500, unit=unit)))
    assert frame.unit == unit and frame.weight_kg == kg


def test_toledo_rejects_bad_checksum_and_resyncs_on_next_stx():
    good = h(TOLEDO_WORKED[0][0])
    spoiled = good[:-1] + bytes((good[-1] ^ 0x01,))
    out = toledo.ToledoDecoder().feed(b"\x55\xaa" + spoiled + good[:9] + good)
    kinds = [type(x).__name__ if not isinstance(x, FrameError) else x.reason for x in out]
    assert kinds == ["no STX", "bad checksum", "no CR at byte 17", "ToledoFrame"]


# ----------------------------------------------------------------------------- Yaohua §2
YAOHUA_CAPTURED = [
    ("02 2B 30 30 30 30 30 30 30 31 42 03", 0.0),
    ("02 2B 30 30 31 35 36 30 30 31 39 03", 1560.0),
    ("02 2B 30 30 31 36 35 30 30 31 39 03", 1650.0),
]


@pytest.mark.parametrize(("hexframe", "weight"), YAOHUA_CAPTURED)
def test_yaohua_captured_frames(hexframe, weight):
    [frame] = yaohua.YaohuaDecoder().feed(h(hexframe))
    assert frame == yaohua.YaohuaFrame(weight, 0)
    assert yaohua.encode(frame) == h(hexframe)


@pytest.mark.parametrize(
    ("raw", "weight", "decimals"),
    [
        (b"\x02+00200021B\x03", 20.0, 2),
        (b"\x02+01234001F\x03", 12340.0, 0),
        (b"\x02-00012001E\x03", -120.0, 0),
    ],
)
def test_yaohua_built_frames(raw, weight, decimals):
    [frame] = yaohua.YaohuaDecoder().feed(raw)
    assert (frame.weight, frame.decimals) == (weight, decimals)
    assert yaohua.encode(frame) == raw


def test_yaohua_bad_xor_is_rejected():
    out = yaohua.YaohuaDecoder().feed(b"\x02+01234001E\x03\x02+01234001F\x03")
    assert isinstance(out[0], FrameError) and out[0].reason == "bad checksum"
    assert out[1] == yaohua.YaohuaFrame(12340.0, 0)


@pytest.mark.parametrize(
    ("raw", "weight", "decimals"),
    [(b"=000.3000", 3.0, 3), (b"=00.1000-", -1.0, 2), (b"=04321000", 12340.0, 0)],
)
def test_yaohua_reversed_frames(raw, weight, decimals):
    out = yaohua.YaohuaReversedDecoder().feed(raw * 3)  # sent back to back, no terminator
    assert out == [yaohua.YaohuaFrame(weight, decimals)] * 3
    assert yaohua.encode_reversed(out[0]) == raw


def test_yaohua_reversed_rejects_garbage_and_resyncs():
    out = yaohua.YaohuaReversedDecoder().feed(b"xx=0x321000=04321000")
    assert [o.reason for o in out if isinstance(o, FrameError)] == ["no '='", "bad '=' frame"]
    assert out[-1] == yaohua.YaohuaFrame(12340.0, 0)


@pytest.mark.parametrize(
    ("command", "hexframe"),
    [
        ("A", "02 41 41 30 30 03"),
        ("B", "02 41 42 30 33 03"),
        ("C", "02 41 43 30 32 03"),
        ("D", "02 41 44 30 35 03"),
    ],
)
def test_yaohua_command_requests(command, hexframe):
    assert yaohua.encode_request(1, command) == h(hexframe)
    assert yaohua.YaohuaRequestDecoder().feed(h(hexframe)) == [yaohua.YaohuaRequest(1, command)]


def test_yaohua_command_responses():
    raw = h("02 41 42 2B 30 31 32 33 34 30 30 31 43 03")
    assert raw == b"\x02AB+01234001C\x03"
    [resp] = yaohua.YaohuaResponseDecoder().feed(raw)
    assert resp == yaohua.YaohuaResponse(1, "B", 12340.0, 0)
    assert yaohua.encode_response(resp) == raw
    handshake = yaohua.encode_response(yaohua.YaohuaResponse(1, "A"))
    assert handshake == h("02 41 41 30 30 03")
    assert yaohua.YaohuaResponseDecoder().feed(handshake + raw) == [yaohua.YaohuaResponse(1, "A"), resp]


# ----------------------------------------------------------------------------- SMA §3.1
def test_sma_built_example_and_motion():
    raw = h("0A 20 31 47 20 20 20 20 20 31 32 33 34 30 2E 30 6B 67 20 0D")
    assert raw == b"\n 1G     12340.0kg \r"
    [frame] = sma.SmaDecoder().feed(raw)
    assert frame == sma.SmaFrame(12340.0, "G", False, " ", 1, "kg")
    assert sma.encode(frame) == raw
    [moving] = sma.SmaDecoder().feed(b"\n 1GM    12340.0kg \r")
    assert moving.motion and sma.encode(moving) == b"\n 1GM    12340.0kg \r"


def test_sma_commands_errors_and_units():
    assert sma.encode_command("W") == b"\nW\r"
    assert sma.SmaCommandDecoder().feed(b"\nW\r\nZ\r") == [sma.SmaCommand("W"), sma.SmaCommand("Z")]
    [err] = sma.SmaDecoder().feed(b"\nE1G  ----------kg \r")
    assert err.weight is None and err.status == "E"
    [lb] = sma.SmaDecoder().feed(b"\n 1N       5.025lb \r")
    assert lb.net and lb.weight_kg == pytest.approx(5.025 * 0.45359237)
    out = sma.SmaDecoder().feed(b"\n 1G     12x40.0kg \r")
    assert isinstance(out[0], FrameError)


# ----------------------------------------------------------------------------- Chafon §5.1
def test_chafon_crc_check_value():
    assert chafon.crc16_mcrf4xx(b"123456789") == 0x6F91


@pytest.mark.parametrize(
    ("address", "command", "hexframe"),
    [(0xFF, 0x01, "04 FF 01 1B B4"), (0x00, 0x01, "04 00 01 DB 4B"), (0xFF, 0x21, "04 FF 21 19 95")],
)
def test_chafon_commands(address, command, hexframe):
    assert chafon.encode_command(chafon.ChafonCommand(address, command)) == h(hexframe)
    assert chafon.ChafonDecoder(responses=False).feed(h(hexframe)) == [chafon.ChafonCommand(address, command)]


EPC = bytes.fromhex("000000000000000000000313")
UHF18 = "13 00 01 03 01 0C 00 00 00 00 00 00 00 00 00 00 03 13 3F 39"
UHF288 = "15 00 01 03 01 01 0C 00 00 00 00 00 00 00 00 00 00 03 13 6B B1 A5"
NO_TAGS_288 = "07 00 01 01 01 00 1E 4B"


def test_chafon_uhfreader18_inventory():
    [resp] = chafon.ChafonDecoder().feed(h(UHF18))
    assert (resp.address, resp.command, resp.status) == (0, 1, chafon.STATUS_MORE)
    assert chafon.parse_inventory(resp) == [chafon.InventoryTag(EPC)]
    assert chafon.encode_response(
        chafon.ChafonResponse(0, 1, 3, chafon.inventory_data([chafon.InventoryTag(EPC)]))
    ) == h(UHF18)


def test_chafon_uhfreader288_inventory_and_no_tags():
    [resp] = chafon.ChafonDecoder().feed(h(UHF288))
    [tag] = chafon.parse_inventory(resp)
    assert (tag.epc, tag.antenna, tag.rssi, tag.epc_hex) == (EPC, 1, 0x6B, "000000000000000000000313")
    data = chafon.inventory_data([chafon.InventoryTag(EPC, 1, 0x6B)], antenna=1)
    assert chafon.encode_response(chafon.ChafonResponse(0, 1, 3, data)) == h(UHF288)
    [empty] = chafon.ChafonDecoder().feed(h(NO_TAGS_288))
    assert empty.status == chafon.STATUS_DONE and chafon.parse_inventory(empty) == []
    assert chafon.encode_response(chafon.ChafonResponse(0, 1, 1, chafon.inventory_data([], antenna=1))) == h(
        NO_TAGS_288
    )


def test_chafon_multi_frame_answer_with_garbage_and_bad_crc():
    spoiled = bytearray(h(UHF288))
    spoiled[-1] ^= 0xFF
    out = chafon.ChafonDecoder().feed(b"\x00\x01" + h(UHF18) + bytes(spoiled) + h(UHF288) + h(NO_TAGS_288))
    frames = [o for o in out if isinstance(o, chafon.ChafonResponse)]
    errors = [o for o in out if isinstance(o, FrameError)]
    assert [f.status for f in frames] == [3, 3, 1]
    assert len(errors) == 2 and errors[1].raw[: len(spoiled)] == bytes(spoiled)


# ----------------------------------------------------------------------------- EM4100 §5.2
RDM6300 = "02 31 33 30 30 35 44 31 44 41 35 46 36 03"


def test_em4100_rdm6300_and_id12_frames():
    [card] = em4100.Em4100Decoder().feed(h(RDM6300))
    assert card.tag_hex == "13005D1DA5" and card.card_number == 6102437 and card.version == 0x13
    assert em4100.encode(card) == h(RDM6300)
    id12 = h(RDM6300)[:-1] + b"\r\n\x03"
    assert em4100.encode(card, frame_length=16) == id12
    assert em4100.Em4100Decoder(frame_length=16).feed(id12 + id12) == [card, card]


def test_em4100_sum_check_sample():
    raw = b"\x022E00AF0EC9B4\x03"
    assert em4100.Em4100Decoder(check="sum").feed(raw) == [em4100.Em4100Frame("2E00AF0EC9")]
    assert isinstance(em4100.Em4100Decoder(check="xor").feed(raw)[0], FrameError)
    assert em4100.encode(em4100.Em4100Frame("2E00AF0EC9"), check="sum") == raw


# ----------------------------------------------------------------------------- ASCII EPC, LED text
def test_ascii_epc_lines():
    out = ascii_epc.AsciiEpcDecoder().feed(
        b"e2801160600002090ad5c1f3\r\n\r\nnot-hex\n300833B2DDD9014000000000\n"
    )
    assert out[0] == ascii_epc.EpcLine("E2801160600002090AD5C1F3")
    assert isinstance(out[1], FrameError)
    assert out[2] == ascii_epc.EpcLine("300833B2DDD9014000000000")
    assert ascii_epc.encode(out[0]) == b"E2801160600002090AD5C1F3\r\n"


def test_led_text_worked_frame_from_the_protocol_document():
    frame = led_text.LedText(1, "沪A12345 请通行", "G")
    raw = led_text.encode(frame)
    assert raw == h("02 54 31 47 BB A6 41 31 32 33 34 35 20 C7 EB CD A8 D0 D0 03 32 35")
    assert led_text.LedTextDecoder().feed(raw) == [frame]
    clear = led_text.encode(led_text.LedText(0, "", "R", "C"))
    assert clear == h("02 43 30 52 03 32 32")
    assert led_text.LedTextDecoder().feed(clear) == [led_text.LedText(0, "", "R", "C")]
    with pytest.raises(ValueError):
        led_text.encode(led_text.LedText(1, "bad\x03text"))
