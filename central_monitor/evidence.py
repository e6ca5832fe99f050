"""Evidence images from the edges' cameras: checked, stored by content, linked to transactions.

The bytes are files under the hub's data directory (next to the SQLite file), named by their
SHA-256, so a re-upload after an edge crash writes nothing new and two links to the same picture share
one file; the store only keeps the link rows (`HubStore.add_evidence`). Files, not BLOBs, because
the store has one thread that also commits ingest batches: serving a thumbnail must not queue behind
an fsync, and a few hundred KB per image would bloat the WAL the ingest path writes through.

Upload path (an edge agent, `efence.contract.agent_http_auth` over the *whole* path):

    POST /api/evidence/{transaction_id}/{sha256}/{name}      Content-Type: image/jpeg | image/png

The signature covers the transaction id, the content hash and the name; the hub checks the body
against the hash, so a captured request can only ever store that same picture for that same
transaction again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

MAX_IMAGE_BYTES = 2 * 1024 * 1024  # a plate/container JPEG is tens of KB; 2 MiB leaves room for 4K frames
CONTENT_TYPES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",)}
SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png"}
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EvidenceRejected(ValueError):
    """The upload is not an acceptable image; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_image(content_type: str, body: bytes, sha256: str) -> str:
    """The normalised content type if `body` is a JPEG/PNG of the declared type matching `sha256`.

    The magic bytes are checked, not just the header: the dashboard serves these files back to
    browsers, and a "JPEG" that is really HTML must never reach them.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        raise EvidenceRejected(
            415, f"content type {ctype or '(none)'} not accepted; send image/jpeg or image/png"
        )
    if len(body) > MAX_IMAGE_BYTES:
        raise EvidenceRejected(413, f"image larger than {MAX_IMAGE_BYTES} bytes")
    if not body.startswith(CONTENT_TYPES[ctype]):
        raise EvidenceRejected(415, f"body is not a {ctype} image")
    if hashlib.sha256(body).hexdigest() != sha256:
        raise EvidenceRejected(422, "body does not match the sha256 in the path")
    return ctype


class EvidenceFiles:
    """Content-addressed image files: `<root>/<sha[:2]>/<sha><.jpg|.png>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str, content_type: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}{SUFFIX[content_type]}"

    def put(self, sha256: str, content_type: str, body: bytes) -> Path:
        """Write atomically and durably (temp file, fsync, rename), so a row never points at half a file."""
        target = self.path(sha256, content_type)
        if target.exists() and target.stat().st_size == len(body):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut before the row is committed
        finally:
            os.close(dir_fd)
        return target


def default_evidence_dir(store: object) -> Path | None:
    """Where the API keeps images when not told: `<db name>-evidence/` beside a SQLite file; None for a
    store without a file (PostgreSQL), which needs an explicit directory."""
    path = getattr(store, "path", None)
    return path.parent / f"{path.stem}-evidence" if isinstance(path, Path) else None
