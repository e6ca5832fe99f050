"""The edge–hub contract (efence/contract.py): each numbered rule of docs/PROTOCOL.md has a test here."""

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from efence.contract import (
    AgentStatus,
    CommandRejected,
    ConfigOffer,
    ConfigReport,
    ContractError,
    EventEnvelope,
    HubAck,
    NonceLedger,
    OperatorCommand,
    Priority,
    RecordDelta,
    RecordPage,
    SignedCommand,
    SignedConfigOffer,
    Topics,
    TransactionPayload,
    config_version,
    decode,
    sign_command,
    sign_config_offer,
    utcnow,
    verify_command,
    verify_config_offer,
)

AGENT = "yangshan-port/port-gate"
KEY = bytes.fromhex("11" * 32)


# C1 ---------------------------------------------------------------- topics
def test_c1_topic_tree_round_trips():
    assert Topics.events("yangshan-port", "port-gate") == "efence/v1/yangshan-port/port-gate/events"
    assert Topics.parse_agent_topic(Topics.commands("a", "b")) == ("a", "b", "commands")
    assert Topics.shared(Topics.ALL_EVENTS) == "$share/efence-hub/efence/v1/+/+/events"
    for bad in ("efence/v2/a/b/events", "efence/v1/a/events", "efence/v1//b/events", "x"):
        with pytest.raises(ValueError):
            Topics.parse_agent_topic(bad)


# C2 ---------------------------------------------------------------- decoding
def test_c2_round_trip_of_every_message_kind():
    event = EventEnvelope.new(
        agent_id=AGENT,
        seq=7,
        type="transaction",
        lane="in-1",
        payload=TransactionPayload(transaction_id="t1", verdict="HOLD_MANUAL", reasons=["M3"]).model_dump(
            mode="json"
        ),
    )
    back = decode(EventEnvelope, event.to_bytes())
    assert back == event and back.priority == Priority.DECISION
    assert decode(TransactionPayload, b'{"transaction_id": "t1", "verdict": "REFUSE"}').verdict == "REFUSE"
    status = AgentStatus(agent_id=AGENT, zone="yangshan-port", checkpoint="port-gate", online=True)
    assert decode(AgentStatus, status.to_bytes()) == status
    delta = RecordDelta(zone="yangshan-port", seq=3, kind="gate_pass", key="P1", record={"passportNo": "P1"})
    page = RecordPage(zone="yangshan-port", head_seq=3, deltas=[delta])
    assert decode(RecordPage, page.to_bytes()).deltas[0] == delta


def test_c2_unknown_fields_are_ignored():
    raw = HubAck(agent_id=AGENT, acked_seq=5).model_dump(mode="json") | {"added_in_v1_1": [1, 2]}
    import json

    assert decode(HubAck, json.dumps(raw)).acked_seq == 5


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"agent_id": "a/b", "acked_seq": -1}', "acked_seq"),
        (b'{"acked_seq": 1}', "agent_id: Field required"),
    ],
)
def test_c2_malformed_messages_raise_contract_error_naming_the_field(payload, needle):
    with pytest.raises(ContractError) as exc:
        decode(HubAck, payload)
    assert needle in exc.value.reason and exc.value.reason.startswith("HubAck")


@given(st.binary(max_size=300))
def test_c2_decode_never_raises_anything_but_contract_error(payload):
    for model in (EventEnvelope, HubAck, SignedCommand, RecordDelta, AgentStatus):
        with contextlib.suppress(ContractError):
            decode(model, payload)


# C3 ---------------------------------------------------------------- events
def test_c3_events_have_unique_ids_and_positive_seq():
    ids = {EventEnvelope.new(agent_id=AGENT, seq=1, type="telemetry", payload={}).id for _ in range(200)}
    assert len(ids) == 200
    with pytest.raises(ContractError):
        decode(
            EventEnvelope,
            EventEnvelope.new(agent_id=AGENT, seq=1, type="x", payload={})
            .to_bytes()
            .replace(b'"seq":1', b'"seq":0'),
        )


# C4 ---------------------------------------------------------------- status
def test_c4_status_for_last_will_says_offline():
    will = AgentStatus(agent_id=AGENT, zone="yangshan-port", checkpoint="port-gate", online=False)
    assert decode(AgentStatus, will.to_bytes()).online is False


# C5 ---------------------------------------------------------------- signed commands
def _cmd(**kw) -> OperatorCommand:
    return OperatorCommand.create(
        agent_id=AGENT, lane="in-1", action="manual_release", operator_id="officer-7", **kw
    )


def test_c5_a_signed_command_verifies_once():
    signed = decode(SignedCommand, sign_command(_cmd(), KEY).to_bytes())
    nonces = NonceLedger()
    assert verify_command(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=nonces).operator_id == "officer-7"
    with pytest.raises(CommandRejected) as exc:
        verify_command(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=nonces)
    assert exc.value.code == "replayed"


def test_c5_forged_tampered_expired_and_misaddressed_commands_are_refused():
    cmd = _cmd()
    good = sign_command(cmd, KEY)
    cases = {
        "forged": sign_command(cmd, b"stolen broker account, wrong key"),
        "forged ": SignedCommand(command=cmd.model_copy(update={"lane": "out-1"}), signature=good.signature),
        "expired": sign_command(_cmd(ttl_s=-1), KEY),
        "wrong_agent": sign_command(cmd.model_copy(update={"agent_id": "yangshan-port/bridge-gate"}), KEY),
    }
    for code, signed in cases.items():
        with pytest.raises(CommandRejected) as exc:
            verify_command(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=NonceLedger())
        assert exc.value.code == code.strip()
    far_future = sign_command(
        _cmd().model_copy(
            update={
                "issued_at": utcnow() + timedelta(hours=1),
                "expires_at": utcnow() + timedelta(hours=1, minutes=1),
            }
        ),
        KEY,
    )
    with pytest.raises(CommandRejected) as exc:
        verify_command(far_future, KEY, agent_id=AGENT, now=utcnow(), nonces=NonceLedger())
    assert exc.value.code == "not_yet_valid"


def test_c5_nonce_ledger_forgets_expired_nonces_only():
    ledger = NonceLedger()
    now = utcnow()
    assert ledger.check_and_add("a" * 16, now + timedelta(seconds=10), now)
    assert not ledger.check_and_add("a" * 16, now + timedelta(seconds=10), now + timedelta(seconds=5))
    assert ledger.check_and_add("a" * 16, now + timedelta(seconds=30), now + timedelta(seconds=11))


# C6 ---------------------------------------------------------------- record deltas
def test_c6_record_deltas_need_positive_seq_and_known_kind():
    with pytest.raises(ContractError):
        decode(RecordDelta, b'{"zone": "z", "seq": 0, "kind": "gate_pass", "key": "k"}')
    with pytest.raises(ContractError) as exc:
        decode(RecordDelta, b'{"zone": "z", "seq": 1, "kind": "pizza", "key": "k"}')
    assert "kind" in exc.value.reason


# C7 ---------------------------------------------------------------- config push
ZONE_YAML = "schema_version: 1\nid: yangshan-port\n"  # the contract does not parse it; the agent does


def _offer(**kw) -> ConfigOffer:
    return ConfigOffer.create(
        yaml_text=kw.pop("yaml_text", ZONE_YAML), agent_id=AGENT, issued_by="admin", **kw
    )


def test_c7_config_topics_and_version_is_the_content_hash():
    assert Topics.config("a", "b") == "efence/v1/a/b/config"
    assert Topics.parse_agent_topic(Topics.config_report("a", "b")) == ("a", "b", "config-report")
    assert Topics.ALL_CONFIG_REPORTS == "efence/v1/+/+/config-report"
    offer = _offer()
    assert offer.version == config_version(ZONE_YAML) == config_version(ZONE_YAML + "")
    assert config_version(ZONE_YAML + "\n") != offer.version


def test_c7_a_signed_offer_verifies_once_and_survives_the_wire():
    signed = decode(SignedConfigOffer, sign_config_offer(_offer(), KEY).to_bytes())
    nonces = NonceLedger()
    assert (
        verify_config_offer(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=nonces).yaml_text == ZONE_YAML
    )
    with pytest.raises(CommandRejected) as exc:
        verify_config_offer(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=nonces)
    assert exc.value.code == "replayed"


def test_c7_forged_tampered_expired_misaddressed_and_mislabelled_offers_are_refused():
    offer = _offer()
    good = sign_config_offer(offer, KEY)
    tampered = offer.model_copy(update={"yaml_text": ZONE_YAML + "# evil\n"})
    cases = {
        "forged": sign_config_offer(offer, b"stolen broker account, wrong key"),
        "forged ": SignedConfigOffer(offer=tampered, signature=good.signature),
        "expired": sign_config_offer(_offer(ttl_s=-1), KEY),
        "wrong_agent": sign_config_offer(
            offer.model_copy(update={"agent_id": "yangshan-port/bridge-gate"}), KEY
        ),
        "version_mismatch": sign_config_offer(tampered, KEY),  # signed, but the text is not its version
    }
    for code, signed in cases.items():
        with pytest.raises(CommandRejected) as exc:
            verify_config_offer(signed, KEY, agent_id=AGENT, now=utcnow(), nonces=NonceLedger())
        assert exc.value.code == code.strip()


def test_c7_an_offer_signature_never_passes_as_a_command_signature():
    """Own signing domain: the same key signs commands and offers, and neither can stand for the other."""
    offer = _offer()
    cmd = OperatorCommand.create(agent_id=AGENT, lane="in-1", action="manual_release", operator_id="o")
    assert sign_config_offer(offer, KEY).signature != sign_command(cmd, KEY).signature
    assert offer.canonical().startswith(b"efence.config-offer/1\n")
    assert not cmd.canonical().startswith(b"efence.config-offer")


@given(st.binary(max_size=300))
def test_c7_decoding_an_offer_never_raises_anything_but_contract_error(payload):
    with contextlib.suppress(ContractError):
        decode(SignedConfigOffer, payload)


def test_c7_config_report_round_trips_and_names_bad_fields():
    report = ConfigReport(
        agent_id=AGENT,
        state="rejected",
        version="a" * 64,
        running_version="b" * 64,
        code="invalid",
        errors=["pushed config:3: site_category: expected one of '31', '32'"],
    )
    assert decode(ConfigReport, report.to_bytes()) == report
    with pytest.raises(ContractError) as exc:
        decode(ConfigReport, b'{"agent_id": "a/b", "state": "exploded", "running_version": ""}')
    assert "state" in exc.value.reason
    status = AgentStatus(agent_id=AGENT, zone="yangshan-port", checkpoint="port-gate", online=True)
    assert status.config_on_trial is False  # optional: an older agent's status still decodes
