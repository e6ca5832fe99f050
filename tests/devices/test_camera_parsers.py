"""Camera payload parsers: the PROTOCOLS.md §6 shapes parsed exactly, and fuzzing that they never raise."""

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.drivers.container_camera import ContainerRead, parse_container_push
from edge_agent.drivers.plate_camera import (
    Deduper,
    Ignored,
    PlateRead,
    PushRejected,
    parse_dahua,
    parse_frigate,
    parse_hikvision,
)
from edge_agent.plates import iso6346_check_digit, normalise_container, normalise_plate
from simulators.cameras import (
    container_push_json,
    dahua_tollgate_json,
    hikvision_anpr_xml,
    hikvision_multipart,
    make_jpeg,
)

HIK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.hikvision.com/ver20/XMLSchema">
<ipAddress>10.1.2.64</ipAddress><ipv6Address>::</ipv6Address><portNo>80</portNo><protocol>HTTP</protocol>
<macAddress>44:19:b6:aa:bb:cc</macAddress><channelID>1</channelID>
<dateTime>2026-11-28T08:15:02.123+08:00</dateTime><activePostCount>1</activePostCount>
<eventType>ANPR</eventType><eventState>active</eventState><eventDescription>ANPR</eventDescription>
<channelName>Lane 1</channelName><deviceID>anpr-1</deviceID>
<ANPR><country>CHN</country><licensePlate>沪A·D1234 5</licensePlate><line>1</line><direction>forward</direction>
<confidenceLevel>96</confidenceLevel><plateType>unknown</plateType><plateColor>green</plateColor>
<licenseBright>0</licenseBright><plateCharBelieve>99,99,98,97,96,99,99,99</plateCharBelieve>
<vehicleType>SUVMPV</vehicleType><vehicleInfo><index>1</index><colorDepth>2</colorDepth><color>white</color>
<length>0</length><vehicleLogoRecog>1036</vehicleLogoRecog></vehicleInfo>
<originalLicensePlate>沪AD12345</originalLicensePlate><vehicleListName>otherList</vehicleListName></ANPR>
</EventNotificationAlert>""".encode()


def test_hikvision_multipart_exact():
    jpeg = make_jpeg("AD12345")
    ctype, body = hikvision_multipart(
        HIK_XML, {"licensePlatePicture.jpg": jpeg, "detectionPicture.jpg": jpeg[::-1]}
    )
    read = parse_hikvision(ctype, body)
    assert isinstance(read, PlateRead)
    assert read.plate_text == "沪A·D1234 5"
    assert normalise_plate(read.plate_text) == "沪AD12345"
    assert read.confidence == 0.96
    assert read.plate_color == "green"
    assert read.event_time == "2026-11-28T08:15:02.123+08:00"
    assert read.event_key == "hik|1|2026-11-28T08:15:02.123+08:00|沪A·D1234 5"
    assert read.images == {"licensePlatePicture": jpeg, "detectionPicture": jpeg[::-1]}  # bytes intact
    assert jpeg[:2] == b"\xff\xd8"


def test_hikvision_bare_xml_isapi_namespace_and_json_variant():
    xml = hikvision_anpr_xml("沪A12345", 0.91, channel=2)
    read = parse_hikvision("application/xml; charset=UTF-8", xml)
    assert isinstance(read, PlateRead) and (read.plate_text, read.confidence) == ("沪A12345", 0.91)
    alert = {
        "ipAddress": "10.1.2.64",
        "channelID": 1,
        "dateTime": "2026-11-28T08:15:02+08:00",
        "activePostCount": 1,
        "eventType": "ANPR",
        "eventState": "active",
        "ANPR": {"licensePlate": "浙B12345", "confidenceLevel": 88, "plateColor": "yellow"},
    }
    for body in (alert, {"EventNotificationAlert": alert}):
        read = parse_hikvision("application/json", json.dumps(body).encode())
        assert isinstance(read, PlateRead)
        assert (read.plate_text, read.confidence, read.plate_color) == ("浙B12345", 0.88, "yellow")
    # a JSON part inside the multipart form is accepted as well
    ctype, body = hikvision_multipart(json.dumps(alert).encode(), {}, xml_name="anpr.json")
    assert isinstance(parse_hikvision(ctype, body), PlateRead)


def test_hikvision_confidence_from_char_believe_when_level_missing():
    xml = HIK_XML.replace(b"<confidenceLevel>96</confidenceLevel>", b"")
    read = parse_hikvision("text/xml", xml)
    assert isinstance(read, PlateRead) and read.confidence == 0.96


def test_hikvision_heartbeat_ignored_and_malformed_rejected():
    heartbeat = b"""<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">
<channelID>1</channelID><dateTime>2026-11-28T08:00:00+08:00</dateTime><eventType>videoloss</eventType>
<eventState>inactive</eventState></EventNotificationAlert>"""
    assert isinstance(parse_hikvision("text/xml", heartbeat), Ignored)
    cases = {
        "no anpr.xml": hikvision_multipart(b"", {"a.jpg": b"\xff\xd8"}),
        "truncated XML": ("text/xml", b"<EventNotificationAlert><eventType>ANPR"),
        "other root": ("text/xml", b"<Foo/>"),
        "no boundary": ("multipart/form-data", b"--x\r\n"),
        "no plate": (
            "text/xml",
            HIK_XML.replace(b"<licensePlate>", b"<x>").replace(b"</licensePlate>", b"</x>"),
        ),
        "DTD": ("text/xml", b'<!DOCTYPE x [<!ENTITY a "b">]><EventNotificationAlert/>'),
        "binary": ("application/octet-stream", b"\x00\x01"),
    }
    for name, (ctype, body) in cases.items():
        assert isinstance(parse_hikvision(ctype, body), PushRejected), name


def test_dahua_itsapi_exact():
    jpeg = make_jpeg("A12345")
    doc = {
        "Picture": {
            "Plate": {
                "PlateNumber": "沪A12345",
                "PlateColor": "Blue",
                "PlateType": "Normal",
                "Confidence": 93,
                "BoundingBox": [1, 2, 3, 4],
                "Channel": 0,
                "IsExist": True,
                "Region": "CHN",
                "UploadNum": 1,
            },
            "Vehicle": {
                "VehicleColor": "White",
                "VehicleType": "Truck",
                "VehicleSign": "",
                "VehicleSeries": "",
            },
            "SnapInfo": {
                "AccurateTime": "2026-11-28 08:15:02.123456",
                "Direction": "Approach",
                "TimeZone": 8,
            },
            "NormalPic": {"Content": base64.b64encode(jpeg).decode(), "PicName": "x.jpg"},
        }
    }
    read = parse_dahua(json.dumps(doc).encode())
    assert isinstance(read, PlateRead)
    assert (read.plate_text, read.confidence, read.plate_color) == ("沪A12345", 0.93, "Blue")
    assert read.event_key == "dahua|0|2026-11-28 08:15:02.123456|沪A12345"
    assert read.images == {"normal": jpeg}
    assert isinstance(parse_dahua(dahua_tollgate_json("", 0.0)), PlateRead)
    assert parse_dahua(dahua_tollgate_json("", 0.0)).plate_text is None
    for body in (
        b"{",
        b"[]",
        b'{"Picture": {}}',
        b'{"Picture": {"Plate": {"PlateNumber": 5, "Confidence": 9}}}',
        json.dumps({"Picture": {**doc["Picture"], "NormalPic": {"Content": "@@@"}}}).encode(),
    ):
        assert isinstance(parse_dahua(body), PushRejected), body[:40]


def test_frigate_shapes_from_protocols():
    lpr = b'{"type":"lpr","id":"1607123955.475377-mxklsc","name":"John\'s Car","plate":"123ABC","score":0.95,"camera":"driveway_cam","timestamp":1607123958.748393}'
    read = parse_frigate(lpr)
    assert read == PlateRead("123ABC", 0.95, "frigate|1607123955.475377-mxklsc|123ABC")
    assert isinstance(parse_frigate(lpr, camera="gate_cam"), Ignored)
    event = {
        "type": "update",
        "before": {"id": "e1", "camera": "gate_cam", "label": "car"},
        "after": {
            "id": "e1",
            "camera": "gate_cam",
            "label": "car",
            "recognized_license_plate": "ABC12345",
            "recognized_license_plate_score": 0.933451,
        },
    }
    read = parse_frigate(json.dumps(event).encode(), camera="gate_cam")
    assert isinstance(read, PlateRead) and (read.plate_text, read.confidence) == ("ABC12345", 0.933451)
    event["after"].pop("recognized_license_plate")
    assert isinstance(parse_frigate(json.dumps(event).encode()), Ignored)
    assert isinstance(parse_frigate(b'{"type": "description", "id": "x"}'), Ignored)
    for bad in (
        b"not json",
        b"[1]",
        b"{}",
        b'{"type":"lpr","plate":"A","score":7000}',
        b'{"type":"lpr","plate":1,"score":0.5}',
    ):
        assert isinstance(parse_frigate(bad), PushRejected), bad


def test_container_push_and_iso6346():
    jpeg = make_jpeg("CSQU3054383")
    read = parse_container_push(
        container_push_json("CSQU 305438-3", 0.93, position="front", event_id="e1", jpeg=jpeg)
    )
    assert read == ContainerRead("CSQU 305438-3", 0.93, "e1", "front", {"container": jpeg})
    assert normalise_container(read.number_text) == "CSQU3054383"
    assert iso6346_check_digit("CSQU305438") == 3
    assert iso6346_check_digit("MWCU605978") == 4
    assert iso6346_check_digit("TEXU307007") == 9
    assert normalise_container("CSQU3054384") is None  # wrong check digit: unreadable, never a number
    assert normalise_container("CSQX3054383") is None
    assert parse_container_push(b'{"number": null, "confidence": 0}').number_text is None
    for bad in (
        b"",
        b"[]",
        b'{"confidence": 1}',
        b'{"number": 42, "confidence": 1}',
        b'{"number": "X"}',
        b'{"number": "X", "confidence": 1, "position": "side"}',
        b'{"number": "X", "confidence": 1, "image": "!!"}',
    ):
        assert isinstance(parse_container_push(bad), PushRejected), bad


def test_plate_normalisation():
    assert normalise_plate("沪a·12345") == "沪A12345"
    assert normalise_plate("ＡＢＣ") is None
    assert normalise_plate("沪A1234O") is None  # O is never used
    assert normalise_plate("粤Z1234港") == "粤Z1234港"
    assert normalise_plate("沪A12345D") == "沪A12345D"  # large new-energy plate
    assert normalise_plate("沪A D1234 5") == "沪AD12345"  # small new-energy plate
    assert normalise_plate("沪AD1234A") is None  # small NEV ends in four digits
    assert normalise_plate("沪A12345X") is None  # X is no new-energy mark
    assert normalise_plate("AB12345") is None  # no province: not a Chinese plate
    assert normalise_plate("无车牌") is None and normalise_plate("unknown") is None


def test_deduper():
    d = Deduper(window_s=5)

    def seen(key, value, now):
        dup = d.check(key, value, now)
        d.remember(key, value, now)
        return dup

    assert not seen("k1", "沪A12345", 0.0)
    assert seen("k1", "沪A12345", 100.0)  # a re-post of the same event: always
    assert seen("k2", "沪A12345", 103.0)  # same plate inside the window
    assert not seen("k3", "沪A12345", 109.0)  # outside the window (counted from the last sighting)
    assert not seen("k4", None, 109.1) and not seen("k5", None, 109.2)  # unreadables: by key only
    assert not d.check("k6", "沪B11111", 0.0) and not d.check(
        "k6", "沪B11111", 0.0
    )  # check alone records nothing


# ------------------------------------------------------------------ fuzzing
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_valid_multipart = hikvision_multipart(
    HIK_XML, {"licensePlatePicture.jpg": b"\xff\xd8\xff\xe0" + bytes(64)}, boundary="b0"
)[1]
_valid_dahua = dahua_tollgate_json("沪A12345", 0.9, jpeg=b"\xff\xd8abc")
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, val in flips:
        out[pos % len(out)] = val
    return bytes(out)


@FUZZ
@given(
    st.binary(max_size=600),
    st.sampled_from(["text/xml", "application/json", "multipart/form-data; boundary=b0", "", "x/y"]),
)
def test_fuzz_hikvision_random(body, ctype):
    assert isinstance(parse_hikvision(ctype, body), PlateRead | Ignored | PushRejected)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 2000),
)
def test_fuzz_hikvision_mutated(flips, cut):
    body = _mutate(_valid_multipart, flips)[: len(_valid_multipart) - cut]
    assert isinstance(
        parse_hikvision("multipart/form-data; boundary=b0", body), PlateRead | Ignored | PushRejected
    )
    assert isinstance(
        parse_hikvision("text/xml", _mutate(HIK_XML, flips)), PlateRead | Ignored | PushRejected
    )


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8), _json_values)
def test_fuzz_dahua_and_frigate(flips, value):
    for body in (
        _mutate(_valid_dahua, flips),
        json.dumps(value).encode(),
        json.dumps({"Picture": value}).encode(),
        json.dumps({"Picture": {"Plate": value}}).encode(),
    ):
        assert isinstance(parse_dahua(body), PlateRead | Ignored | PushRejected)
    for body in (
        json.dumps(value).encode(),
        json.dumps({"type": "lpr", "plate": value, "score": value}).encode(),
        json.dumps({"after": value}).encode(),
    ):
        assert isinstance(parse_frigate(body), PlateRead | Ignored | PushRejected)


@FUZZ
@given(_json_values, st.binary(max_size=200))
def test_fuzz_container_push(value, raw):
    for body in (
        raw,
        json.dumps(value).encode(),
        json.dumps({"number": value, "confidence": value, "image": value}).encode(),
    ):
        assert isinstance(parse_container_push(body), ContainerRead | PushRejected)


@FUZZ
@given(st.text(max_size=14))
def test_fuzz_normalisers(text):
    plate = normalise_plate(text)
    assert plate is None or normalise_plate(plate) == plate
    number = normalise_container(text)
    assert number is None or (len(number) == 11 and iso6346_check_digit(number[:10]) == int(number[10]))


@FUZZ
@given(st.binary(min_size=1, max_size=2000), st.binary(max_size=300))
def test_fuzz_multipart_images_survive_byte_exact(image, other):
    # evidence must be kept exactly: CR, LF, CRLF and boundary-like bytes inside a JPEG are data
    image = image + b"\r\n--x\r\n\r" + other
    ctype, body = hikvision_multipart(
        HIK_XML, {"licensePlatePicture.jpg": image, "detectionPicture.jpg": other}
    )
    read = parse_hikvision(ctype, body)
    assert isinstance(read, PlateRead)
    assert read.images == {"licensePlatePicture": image, "detectionPicture": other}
