"""Broker connection security for the edge uplink and the hub ingest: TLS and credentials, checked at start.

Small helpers on purpose, so `edge_agent/uplink.py` and `central_monitor/ingest.py` need two or three
lines each. Every check runs *before* the first connection attempt, so a misconfigured agent or hub
refuses to start with a message naming the file or setting, instead of retrying forever:

- `mqtts://` needs a CA file (`ca_file` or `EFENCE_MQTT_CA_FILE`); it must exist and parse; the
  server certificate is always verified, hostname included. There is no fallback to plain text.
- A client certificate needs its key and vice versa (mutual TLS, `EFENCE_MQTT_CERT_FILE` /
  `EFENCE_MQTT_KEY_FILE`, else systemd credentials `mqtt-client.crt` / `mqtt-client.key`): both are
  paths to PEM files, loaded and checked at start; the PEM itself never sits in a config. With a
  client certificate no password is required (a broker with `use_identity_as_username` takes the
  user from the certificate's CN).
- TLS files with an `mqtt://` URL, or plain `mqtt://` to anything but loopback, are refused.
- Passwords come from a file or the environment, never from the YAML configs:
  `EFENCE_MQTT_PASSWORD_FILE`, then systemd's `$CREDENTIALS_DIRECTORY/mqtt-password`
  (`LoadCredential=`), then `EFENCE_MQTT_PASSWORD`.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

CA_ENV = "EFENCE_MQTT_CA_FILE"
CERT_ENV = "EFENCE_MQTT_CERT_FILE"
KEY_ENV = "EFENCE_MQTT_KEY_FILE"
USER_ENV = "EFENCE_MQTT_USERNAME"
PASSWORD_ENV = "EFENCE_MQTT_PASSWORD"
PASSWORD_FILE_ENV = "EFENCE_MQTT_PASSWORD_FILE"
CREDENTIAL_NAME = "mqtt-password"
CERT_CREDENTIAL = "mqtt-client.crt"
KEY_CREDENTIAL = "mqtt-client.key"


class MqttSecurityError(ValueError):
    """The broker connection is misconfigured; the message names the file or setting to fix."""


def _is_loopback(host: str | None) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _readable(kind: str, path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise MqttSecurityError(f"MQTT TLS {kind} file not found: {p}")
    if not os.access(p, os.R_OK):
        raise MqttSecurityError(f"MQTT TLS {kind} file not readable: {p}")
    return p


def tls_context_for(
    url: str,
    ca_file: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    *,
    allow_plaintext_remote: bool = False,
    env: Mapping[str, str] | None = None,
) -> ssl.SSLContext | None:
    """The TLS context for `url` (`None` for loopback `mqtt://`), or `MqttSecurityError`.

    Paths default to `EFENCE_MQTT_CA_FILE`, `EFENCE_MQTT_CERT_FILE`, `EFENCE_MQTT_KEY_FILE`.
    """
    env = os.environ if env is None else env
    ca_file = ca_file or env.get(CA_ENV) or None
    cert, key = client_cert_files(cert, key, env)
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise MqttSecurityError(f"broker URL must be mqtt:// or mqtts://, got {url!r}")
    if u.scheme == "mqtt":
        if ca_file or cert or key:
            raise MqttSecurityError(
                f"TLS files are configured but the broker URL {url!r} is plain mqtt://; use mqtts://"
            )
        if not _is_loopback(u.hostname) and not allow_plaintext_remote:
            raise MqttSecurityError(
                f"refusing plain-text MQTT to {u.hostname!r}: use mqtts:// with {CA_ENV} (plain text is "
                "allowed to loopback only)"
            )
        return None
    if not ca_file:
        raise MqttSecurityError(f"broker URL {url!r} is mqtts:// but no CA file is set ({CA_ENV})")
    if bool(cert) != bool(key):
        raise MqttSecurityError(
            f"a client certificate needs its key and vice versa ({CERT_ENV}={cert!r}, {KEY_ENV}={key!r})"
        )
    ca = _readable("CA", ca_file)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # CERT_REQUIRED + hostname check
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, ValueError) as exc:
        raise MqttSecurityError(f"MQTT TLS CA file {ca} is not a PEM CA certificate: {exc}") from None
    if cert and key:
        c, k = _readable("client certificate", cert), _readable("client key", key)
        try:
            ctx.load_cert_chain(str(c), str(k))
        except ssl.SSLError as exc:
            raise MqttSecurityError(f"MQTT client certificate {c} / key {k} do not load: {exc}") from None
    return ctx


def client_cert_files(
    cert: str | Path | None, key: str | Path | None, env: Mapping[str, str]
) -> tuple[str | Path | None, str | Path | None]:
    """The client certificate and key paths: arguments, then the environment, then systemd credentials."""
    cert = cert or env.get(CERT_ENV) or None
    key = key or env.get(KEY_ENV) or None
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and not cert and not key:
        c, k = Path(cred_dir) / CERT_CREDENTIAL, Path(cred_dir) / KEY_CREDENTIAL
        cert, key = (c if c.is_file() else None), (k if k.is_file() else None)
    return cert, key


def tls_params_for(
    url: str,
    ca_file: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> aiomqtt.TLSParameters | None:
    """The same checks as `tls_context_for`, for code that passes `tls_params=` to aiomqtt."""
    env = os.environ if env is None else env
    if tls_context_for(url, ca_file, cert, key, env=env) is None:
        return None
    cert, key = client_cert_files(cert, key, env)
    return aiomqtt.TLSParameters(
        ca_certs=str(ca_file or env.get(CA_ENV)),
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )


def mqtt_password(env: Mapping[str, str] | None = None) -> str | None:
    """The broker password from a file or the environment (never from a YAML config)."""
    env = os.environ if env is None else env
    if path := env.get(PASSWORD_FILE_ENV):
        p = Path(path)
        if not p.is_file():
            raise MqttSecurityError(f"MQTT password file not found: {p} ({PASSWORD_FILE_ENV})")
        return p.read_text().strip()
    if cred_dir := env.get("CREDENTIALS_DIRECTORY"):
        p = Path(cred_dir) / CREDENTIAL_NAME
        if p.is_file():
            return p.read_text().strip()
    return env.get(PASSWORD_ENV) or None


@dataclass(frozen=True)
class BrokerSecurity:
    """What to pass to `aiomqtt.Client`: `username=`, `password=`, `tls_context=`."""

    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


def broker_security(
    url: str, default_username: str | None = None, env: Mapping[str, str] | None = None
) -> BrokerSecurity:
    """TLS + credentials for one client, from the URL and the environment; raises `MqttSecurityError`.

    The agent passes its agent id (`zone/checkpoint`, its broker user) as `default_username`.
    A user in the URL (`mqtt://user@host`) wins over `EFENCE_MQTT_USERNAME`; a password in the URL
    is refused for anything but loopback (it would sit in a config file or a process list).
    """
    env = os.environ if env is None else env
    u = urlsplit(url)
    if u.password and not _is_loopback(u.hostname):
        raise MqttSecurityError(
            f"broker URL for {u.hostname!r} carries a password; put it in {PASSWORD_FILE_ENV} instead"
        )
    ctx = tls_context_for(url, env=env)
    password = u.password or mqtt_password(env)
    has_client_cert = ctx is not None and client_cert_files(None, None, env)[0] is not None
    # the agent id is the broker user only where there is a password or a certificate for it
    # (the loopback demo broker stays anonymous)
    username = (
        u.username
        or env.get(USER_ENV)
        or (default_username if password is not None or has_client_cert else None)
    )
    if password is None and not has_client_cert and not _is_loopback(u.hostname):
        raise MqttSecurityError(
            f"no MQTT password or client certificate for {u.hostname!r} (user {username or default_username!r}): "
            f"set {PASSWORD_FILE_ENV}, LoadCredential={CREDENTIAL_NAME}:… or {PASSWORD_ENV}, or {CERT_ENV} and {KEY_ENV}"
        )
    return BrokerSecurity(username, password, ctx)
