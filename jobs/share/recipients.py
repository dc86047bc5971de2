"""Recipients: one bearer token each, for one partner, stored only as a SHA-256 hash.

The store is a small JSON file, replaced atomically on every change; the server rereads it when
it changes, so a revoked or rotated token is refused from the next request on. Tokens are 256
random bits, so a plain hash is enough (no password stretching), and lookups compare hashes in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobs.config import Config
from jobs.errors import ConfigError


@dataclass(frozen=True)
class Recipient:
    id: str
    partner: str
    token_sha256: str
    created: str  # ISO 8601, UTC
    expires: str
    revoked: str | None = None

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked is None and now < datetime.fromisoformat(self.expires)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def store_path(cfg: Config) -> Path:
    if cfg.share.recipients_file:
        return Path(cfg.share.recipients_file)
    root = cfg.lake.root
    if "://" in root and not root.startswith("file://"):
        raise ConfigError(
            "share.recipients_file: the lake is not on local disk; set it to a local path "
            "(the server's own disk or a mounted secret volume)"
        )
    return Path(root.removeprefix("file://")) / "_sharing" / "recipients.json"


class Recipients:
    """The recipient store of one configuration."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.path = store_path(cfg)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._items: list[Recipient] = []

    def all(self) -> list[Recipient]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._items, self._seen = [], None
                return []
            if self._seen != (stat.st_ino, stat.st_mtime_ns, stat.st_size):
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                self._items = [Recipient(**r) for r in doc.get("recipients", [])]
                self._seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            return list(self._items)

    def authenticate(self, token: str | None) -> Recipient | None:
        """The active recipient whose token this is; None for a missing, unknown, expired or
        revoked token."""
        if not token:
            return None
        digest = _hash(token)
        match = None
        for r in self.all():  # no early exit: the time taken does not depend on which matched
            if hmac.compare_digest(r.token_sha256, digest):
                match = r
        return match if match is not None and match.active() else None

    def get(self, recipient_id: str) -> Recipient | None:
        return next((r for r in self.all() if r.id == recipient_id), None)

    def create(self, partner: str, *, expires_in: timedelta | None = None) -> tuple[Recipient, str]:
        if partner not in self.cfg.partner_ids:
            raise ConfigError(
                f"unknown partner {partner!r}; the partners are {', '.join(self.cfg.partner_ids)}"
            )
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        life = expires_in or timedelta(days=self.cfg.share.token_days)
        recipient = Recipient(
            id=f"{partner}-{secrets.token_hex(4)}", partner=partner, token_sha256=_hash(token),
            created=now.isoformat(timespec="seconds"), expires=(now + life).isoformat(timespec="seconds"),
        )  # fmt: skip
        self._save([*self.all(), recipient])
        return recipient, token

    def rotate(
        self, recipient_id: str, *, expires_in: timedelta | None = None
    ) -> tuple[Recipient, str]:
        """A new token for a recipient; the old one is refused from now on."""
        old = self._require(recipient_id)
        token = secrets.token_urlsafe(32)
        life = expires_in or timedelta(days=self.cfg.share.token_days)
        new = replace(old, token_sha256=_hash(token), revoked=None,
                      expires=(datetime.now(UTC) + life).isoformat(timespec="seconds"))  # fmt: skip
        self._save([new if r.id == recipient_id else r for r in self.all()])
        return new, token

    def revoke(self, recipient_id: str) -> Recipient:
        old = self._require(recipient_id)
        new = replace(old, revoked=datetime.now(UTC).isoformat(timespec="seconds"))
        self._save([new if r.id == recipient_id else r for r in self.all()])
        return new

    def _require(self, recipient_id: str) -> Recipient:
        found = self.get(recipient_id)
        if found is None:
            raise ConfigError(f"no recipient {recipient_id!r}; `share-recipient list` shows them")
        return found

    def _save(self, items: list[Recipient]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".recipients-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"recipients": [asdict(r) for r in items]}, out, indent=1)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def profile(endpoint: str, token: str, recipient: Recipient) -> dict:
    """The profile file a recipient's client reads (``shareCredentialsVersion`` 1)."""
    return {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint,
        "bearerToken": token,
        "expirationTime": datetime.fromisoformat(recipient.expires)
        .astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.0Z"),
    }
