"""The agent and hub refuse to start with TLS or credentials misconfigured (efence.mqtt_tls)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from efence.mqtt_tls import MqttSecurityError, broker_security, mqtt_password, tls_context_for, tls_params_for


def test_mqtts_with_a_missing_ca_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.crt"
    with pytest.raises(MqttSecurityError, match=str(missing)):
        tls_context_for("mqtts://mqtt.efence.local:8883", ca_file=missing, env={})


def test_mqtts_without_any_ca_names_the_setting() -> None:
    with pytest.raises(MqttSecurityError, match="EFENCE_MQTT_CA_FILE"):
        tls_context_for("mqtts://mqtt.efence.local:8883", env={})


def test_a_ca_file_that_is_not_a_certificate_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate\n")
    with pytest.raises(MqttSecurityError, match="not a PEM CA certificate"):
        tls_context_for("mqtts://h:8883", ca_file=bad, env={})


def test_client_cert_without_key_is_refused(pki: dict[str, Path]) -> None:
    with pytest.raises(MqttSecurityError, match="needs its key"):
        tls_context_for("mqtts://h:8883", ca_file=pki["ca"], cert=pki["client_crt"], env={})


def test_mismatched_client_cert_and_key_are_refused(pki: dict[str, Path]) -> None:
    with pytest.raises(MqttSecurityError, match="do not load"):
        tls_context_for("mqtts://h:8883", ca_file=pki["ca"], cert=pki["client_crt"], key=pki["key"], env={})


def test_tls_files_with_a_plain_url_are_refused(pki: dict[str, Path]) -> None:
    with pytest.raises(MqttSecurityError, match="use mqtts://"):
        tls_context_for("mqtt://127.0.0.1:1883", ca_file=pki["ca"], env={})


def test_plain_text_is_for_loopback_only() -> None:
    assert tls_context_for("mqtt://127.0.0.1:1883", env={}) is None
    assert tls_context_for("mqtt://localhost:1883", env={}) is None
    with pytest.raises(MqttSecurityError, match="refusing plain-text MQTT"):
        tls_context_for("mqtt://mqtt.efence.local:1883", env={})


def test_a_good_setup_verifies_server_and_hostname(pki: dict[str, Path]) -> None:
    env = {"EFENCE_MQTT_CA_FILE": str(pki["ca"])}
    ctx = tls_context_for("mqtts://mqtt.efence.local:8883", env=env)
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    mtls = tls_context_for("mqtts://h:8883", ca_file=pki["ca"], cert=pki["client_crt"], key=pki["client_key"])
    assert mtls is not None
    params = tls_params_for("mqtts://h:8883", env=env)
    assert params is not None and params.cert_reqs == ssl.CERT_REQUIRED and params.ca_certs == str(pki["ca"])


def test_passwords_come_from_file_credentials_or_env(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt-password").write_text("from-systemd\n")
    assert mqtt_password({"EFENCE_MQTT_PASSWORD_FILE": str(f), "EFENCE_MQTT_PASSWORD": "x"}) == "from-file"
    assert mqtt_password({"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}) == "from-systemd"
    assert mqtt_password({"EFENCE_MQTT_PASSWORD": "from-env"}) == "from-env"
    assert mqtt_password({}) is None
    with pytest.raises(MqttSecurityError, match=str(tmp_path / "missing")):
        mqtt_password({"EFENCE_MQTT_PASSWORD_FILE": str(tmp_path / "missing")})


def test_broker_security_for_an_agent(pki: dict[str, Path], tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    env = {"EFENCE_MQTT_CA_FILE": str(pki["ca"]), "EFENCE_MQTT_PASSWORD_FILE": str(pw)}
    sec = broker_security("mqtts://mqtt.efence.local:8883", default_username="z1/gate-1", env=env)
    assert (sec.username, sec.password) == ("z1/gate-1", "s3cret") and sec.tls_context is not None
    # a remote broker without a password: refuse to start rather than retry forever
    with pytest.raises(MqttSecurityError, match="no MQTT password"):
        broker_security(
            "mqtts://mqtt.efence.local:8883", "z1/gate-1", env={"EFENCE_MQTT_CA_FILE": str(pki["ca"])}
        )
    # a password inside a remote URL (i.e. in a config file) is refused
    with pytest.raises(MqttSecurityError, match="carries a password"):
        broker_security("mqtts://u:p@mqtt.efence.local:8883", env=env)
    # the loopback demo broker stays anonymous
    assert broker_security("mqtt://127.0.0.1:1883", "z1/gate-1", env={}).username is None
