"""Mosquitto configuration the project ships, and a helper that runs a private broker (tests, bench).

The broker's defaults (`max_queued_messages 1000`, `max_inflight_messages 20`) silently dropped 93 % of
a fast QoS 1 stream to a slow subscriber on these machines (DESIGN.md): a config that carries an agent's
events must lift both limits, and this one does.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from efence.ports import free_port

NO_DROP_SETTINGS = """\
# never silently drop an agent's messages (Mosquitto's defaults do, under load)
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
"""


def local_config(port: int, *, persistence_dir: Path | None = None) -> str:
    """A loopback-only, anonymous broker config for the demo and tests (deployments add TLS, users, ACL)."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", NO_DROP_SETTINGS]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    else:
        lines.append("persistence false")
    return "\n".join(lines) + "\n"


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout_s} s")


@contextmanager
def private_mosquitto(port: int | None = None, *, persistence: bool = False) -> Iterator[str]:
    """Run `mosquitto` with `local_config` on a free port; yields `mqtt://127.0.0.1:PORT`."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if port is None:
        port = free_port()
    with tempfile.TemporaryDirectory(prefix="efence-mosquitto-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(local_config(port, persistence_dir=Path(tmp) if persistence else None))
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(port, 10)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


# =========================================================================== deployment configuration
# `efence mqtt config` writes these: mosquitto.conf, a password file with one user per checkpoint agent
# (`zone/checkpoint`) plus the hub user(s), and an ACL that lets each agent publish only its own topics
# and read only its own ack/resend/commands, its zone's records and the hub's status (Sparkplug-style).

AGENT_PUBLISHES = ("status", "events", "command-results", "config-report")
AGENT_READS = ("ack", "resend", "commands", "config")
HUB_READS = ("status", "events", "command-results", "config-report")
HUB_WRITES = ("ack", "resend", "commands", "config")
DEFAULT_HUB_USER = "efence-hub"
PBKDF2_ITERATIONS = 101  # what `mosquitto_passwd` uses for its `$7$` (PBKDF2-SHA512) hashes


def agent_username(zone: str, checkpoint: str) -> str:
    """The broker user of a checkpoint agent: its agent id `zone/checkpoint`."""
    return f"{zone}/{checkpoint}"


def _check_slug(value: str) -> str:
    if not value or any(ch in value for ch in "/+#$ \t\n") or value != value.strip():
        raise ValueError(f"not a valid zone/checkpoint id for the broker ACL: {value!r}")
    return value


def agent_acl(zone: str, checkpoint: str) -> list[str]:
    """ACL lines of one agent (explicit topics, no `%u` patterns: Mosquitto refuses `/` in those)."""
    z, c = _check_slug(zone), _check_slug(checkpoint)
    lines = [f"user {agent_username(z, c)}"]
    lines += [f"topic write efence/v1/{z}/{c}/{leaf}" for leaf in AGENT_PUBLISHES]
    lines += [f"topic read efence/v1/{z}/{c}/{leaf}" for leaf in AGENT_READS]
    lines += [f"topic read efence/v1/{z}/records", "topic read efence/v1/hub/status"]
    return lines


def hub_acl(user: str = DEFAULT_HUB_USER, share_group: str = "efence-hub") -> list[str]:
    """The hub reads what agents publish (also as a shared subscription) and writes what agents read."""
    lines = [f"user {user}"]
    for leaf in HUB_READS:
        lines.append(f"topic read efence/v1/+/+/{leaf}")
        lines.append(f"topic read $share/{share_group}/efence/v1/+/+/{leaf}")
    lines += [f"topic write efence/v1/+/+/{leaf}" for leaf in HUB_WRITES]
    lines += ["topic write efence/v1/+/records", "topic readwrite efence/v1/hub/status"]
    return lines


def acl_text(agents: list[tuple[str, str]], hub_users: list[str] = [DEFAULT_HUB_USER]) -> str:  # noqa: B006
    """The whole ACL file. Anything not granted is denied (and Mosquitto denies silently)."""
    blocks = ["# generated by `efence mqtt config` — do not edit; regenerate instead", ""]
    for user in hub_users:
        blocks += [*hub_acl(user), ""]
    for zone, checkpoint in sorted(agents):
        blocks += [*agent_acl(zone, checkpoint), ""]
    return "\n".join(blocks)


def password_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A Mosquitto 2 password-file hash (`$7$`, PBKDF2-SHA512), the format `mosquitto_passwd` writes."""
    import base64
    import hashlib
    import os

    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file_text(passwords: dict[str, str]) -> str:
    """`user:hash` lines for `password_file`."""
    for user in passwords:
        if ":" in user or "\n" in user:
            raise ValueError(f"broker user names may not contain ':' or newlines: {user!r}")
    return "".join(f"{user}:{password_hash(pw)}\n" for user, pw in sorted(passwords.items()))


def secret_path(secrets_dir: Path, user: str) -> Path:
    """Where a user's broker password lives: `<secrets>/<zone>/<checkpoint>.mqtt-password` or `<hub>.mqtt-password`."""
    return secrets_dir / f"{user}.mqtt-password"


def ensure_password(secrets_dir: Path, user: str) -> tuple[str, bool]:
    """Read the user's password file, or create it (random, mode 0600). Returns (password, created)."""
    import os
    import secrets as _secrets

    path = secret_path(secrets_dir, user)
    if path.exists():
        pw = path.read_text().strip()
        if not pw:
            raise ValueError(f"{path} is empty")
        return pw, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pw = _secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pw + "\n")
    return pw, True


@dataclass(frozen=True)
class TlsFiles:
    """The broker's TLS material.

    `require_client_cert` turns on mutual TLS: every client must present a certificate signed by
    `cafile`'s CA (no certificate, or one from another CA, fails the handshake). With
    `identity_as_username` the certificate's CN *is* the broker user (`zone/checkpoint`, `efence-hub`),
    so the ACL binds to the certificate, not to a user name the client chose; no password is asked.
    """

    cafile: Path
    certfile: Path
    keyfile: Path
    require_client_cert: bool = False
    identity_as_username: bool = False

    def check(self) -> None:
        for name, path in (("cafile", self.cafile), ("certfile", self.certfile), ("keyfile", self.keyfile)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"TLS {name} not found: {path}")
        if self.identity_as_username and not self.require_client_cert:
            raise ValueError("identity_as_username needs require_client_cert (mutual TLS)")


def deployment_config(
    *,
    password_file: Path,
    acl_file: Path,
    persistence_dir: Path,
    tls: TlsFiles | None,
    port: int = 8883,
    bind: str = "0.0.0.0",  # noqa: S104 - a broker listens for the site's agents
    insecure_loopback_port: int | None = None,
    log_dest: str = "syslog",
    run_as_user: str | None = None,
) -> str:
    """mosquitto.conf for a site: authenticated, ACL'd, persistent, never dropping, TLS-only off loopback.

    With `tls`, the only listener is TLS (there is no plain-text fallback port). Without it, the
    listener must be loopback-only (`insecure_loopback_port`), which tests and a single-machine
    commissioning rig use; anything else is refused.
    """
    lines = [
        "# generated by `efence mqtt config` — do not edit; regenerate instead",
        *([f"user {run_as_user}"] if run_as_user else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "",
        NO_DROP_SETTINGS.rstrip("\n"),
        "# keep the hub's persistent session (and the QoS 1 events queued for it) across restarts",
        "persistence true",
        f"persistence_location {str(persistence_dir).rstrip('/')}/",
        "autosave_interval 30",
        "persistent_client_expiration 14d",
        "retain_available true",
        "max_keepalive 120",
        f"log_dest {log_dest}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
    ]
    if tls is not None:
        lines += [
            f"listener {port} {bind}",
            "protocol mqtt",
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if tls.require_client_cert else 'false'}",
            f"use_identity_as_username {'true' if tls.identity_as_username else 'false'}",
        ]
    if insecure_loopback_port is not None:
        lines += [
            "",
            "# plain text, loopback only (tests / commissioning on one machine); still user + ACL",
            f"listener {insecure_loopback_port} 127.0.0.1",
            "protocol mqtt",
        ]
    if tls is None and insecure_loopback_port is None:
        raise ValueError("a site broker needs TLS files (or an explicit loopback-only plain port)")
    return "\n".join(lines) + "\n"


@dataclass
class GeneratedBroker:
    conf: Path
    password_file: Path
    acl_file: Path
    created_secrets: list[Path]
    users: list[str]


def write_broker_config(
    out_dir: Path,
    *,
    agents: list[tuple[str, str]],
    secrets_dir: Path,
    hub_users: list[str] = [DEFAULT_HUB_USER],  # noqa: B006
    tls: TlsFiles | None = None,
    port: int = 8883,
    bind: str = "0.0.0.0",  # noqa: S104
    insecure_loopback_port: int | None = None,
    persistence_dir: Path | None = None,
    log_dest: str = "syslog",
    run_as_user: str | None = None,
) -> GeneratedBroker:
    """Write mosquitto.conf, passwd and acl into `out_dir`; passwords come from (or go to) `secrets_dir`."""
    import os

    if tls is not None:
        tls.check()
    out_dir.mkdir(parents=True, exist_ok=True)
    users = list(dict.fromkeys([*hub_users, *(agent_username(z, c) for z, c in agents)]))
    passwords: dict[str, str] = {}
    created: list[Path] = []
    for user in users:
        pw, new = ensure_password(secrets_dir, user)
        passwords[user] = pw
        if new:
            created.append(secret_path(secrets_dir, user))
    passwd = out_dir / "passwd"
    acl = out_dir / "acl"
    fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as f:
        f.write(password_file_text(passwords))
    acl.write_text(acl_text(agents, hub_users))
    conf = out_dir / "mosquitto.conf"
    conf.write_text(
        deployment_config(
            password_file=passwd,
            acl_file=acl,
            persistence_dir=persistence_dir or out_dir / "data",
            tls=tls,
            port=port,
            bind=bind,
            insecure_loopback_port=insecure_loopback_port,
            log_dest=log_dest,
            run_as_user=run_as_user,
        )
    )
    _readable_by_broker(passwd)
    return GeneratedBroker(conf, passwd, acl, created, users)


def _readable_by_broker(path: Path, group: str = "mosquitto") -> None:
    """root:mosquitto 0640, so the broker (which drops to user `mosquitto`) reads it and nobody else."""
    import grp
    import os

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    if os.geteuid() == 0:
        os.chown(path, -1, gid)
    path.chmod(0o640)


@contextmanager
def run_mosquitto(conf: Path, ports: list[int], timeout_s: float = 10.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `mosquitto -c conf` until the block ends (its output goes to `mosquitto.log` beside `conf`)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    log_path = conf.parent / "mosquitto.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        try:
            for port in ports:
                _wait_port(port, timeout_s)
        except TimeoutError:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(
                f"mosquitto did not start: {log_path.read_text(errors='replace')[-2000:]}"
            ) from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# =========================================================================== certificates (openssl CLI)
def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl") or "/usr/bin/openssl"
    res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {res.stderr.strip()[-800:]}")


def make_ca(out_dir: Path, name: str = "efence site CA", days: int = 3650) -> tuple[Path, Path]:
    """A private CA (EC P-256): returns (ca.crt, ca.key). Keep ca.key offline on a real site."""
    out_dir.mkdir(parents=True, exist_ok=True)
    crt, key = out_dir / "ca.crt", out_dir / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key.name, "-out", crt.name, "-days", str(days), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=out_dir,
    )  # fmt: skip
    key.chmod(0o600)
    return crt, key


def make_cert(
    out_dir: Path,
    stem: str,
    *,
    ca: tuple[Path, Path],
    common_name: str,
    dns: list[str] = [],  # noqa: B006
    ips: list[str] = [],  # noqa: B006
    client: bool = False,
    days: int = 825,
) -> tuple[Path, Path]:
    """A server (or, with `client`, a client) certificate signed by `ca`: returns (stem.crt, stem.key)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    crt, key, csr, ext = (out_dir / f"{stem}.{s}" for s in ("crt", "key", "csr", "ext"))
    crt.parent.mkdir(parents=True, exist_ok=True)
    sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n"
        + (f"subjectAltName={','.join(sans)}\n" if sans else "")
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
        "-out", str(csr), "-subj", "/CN=" + common_name.replace("/", "\\/"), cwd=out_dir,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0].resolve()), "-CAkey", str(ca[1].resolve()),
        "-CAcreateserial", "-out", str(crt), "-days", str(days), "-extfile", str(ext), cwd=out_dir,
    )  # fmt: skip
    key.chmod(0o600)
    csr.unlink()
    ext.unlink()
    return crt, key


def client_cert_paths(pki_dir: Path, user: str) -> tuple[Path, Path]:
    """Where a broker user's client certificate and key live: `<pki>/clients/<zone>/<checkpoint>.crt|.key`
    for an agent, `<pki>/clients/efence-hub.crt|.key` for the hub (the layout of the password files)."""
    if not user or ".." in user.split("/") or user.startswith("/"):
        raise ValueError(f"not a broker user name for a certificate file: {user!r}")
    base = pki_dir / "clients" / user
    return base.with_name(base.name + ".crt"), base.with_name(base.name + ".key")


def make_client_certs(
    pki_dir: Path, users: list[str], *, ca: tuple[Path, Path], days: int = 825
) -> dict[str, tuple[Path, Path]]:
    """A client certificate (CN = the broker user) per user, signed by the site CA; existing ones are kept.

    With `use_identity_as_username` the broker takes the CN as the user, so an agent's certificate
    only ever opens that agent's topics in the ACL.
    """
    made: dict[str, tuple[Path, Path]] = {}
    for user in users:
        crt, key = client_cert_paths(pki_dir, user)
        if not (crt.is_file() and key.is_file()):
            make_cert(crt.parent, crt.stem, ca=ca, common_name=user, client=True, days=days)
        made[user] = (crt, key)
    return made
