"""File URLs that expire.

On local storage the server serves the files itself: a URL names the recipient, the table and
the file, and carries an expiry (``se``) and an HMAC-SHA256 over all of them (``sig``). The
query keys are those of an Azure SAS (``sp``, ``se``, ``sig``), which clients recognise as a
pre-signed URL and fetch as given. On Azure storage the URL is a read-only SAS of the blob itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

logger = logging.getLogger(__name__)


def url_key(env_name: str) -> bytes:
    """The signing key from ``env_name``, or a random one that lives as long as this process
    (URLs handed out before a restart then stop working, which clients handle by asking again)."""
    value = os.environ.get(env_name)
    if value:
        if len(value) < 32:
            from jobs.errors import SecretNotFoundError

            raise SecretNotFoundError(
                f"environment variable {env_name} holds a URL signing key shorter than 32 "
                f"characters; set a longer random value"
            )
        return value.encode("utf-8")
    logger.warning(
        "%s is not set: file URLs are signed with a random key of this process", env_name
    )
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Signer:
    key: bytes
    base_url: str  # the server's endpoint, e.g. http://127.0.0.1:8080/delta-sharing
    ttl_s: int

    def _mac(self, recipient: str, table_key: str, file: str, expires: int) -> str:
        message = "\n".join((recipient, table_key, file, str(expires))).encode("utf-8")
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def url(self, recipient: str, table_key: str, file: str) -> tuple[str, int]:
        """A URL for ``file`` (relative to the table) and its expiry in epoch milliseconds."""
        expires = int(time.time()) + self.ttl_s
        query = urlencode({"rid": recipient, "sp": "r", "se": expires,
                           "sig": self._mac(recipient, table_key, file, expires)})  # fmt: skip
        return f"{self.base_url}/files/{quote(table_key)}/{quote(file)}?{query}", expires * 1000

    def check(
        self, recipient: str, table_key: str, file: str, expires: str, sig: str
    ) -> str | None:
        """Why a URL is refused, or None when its signature and expiry hold."""
        try:
            when = int(expires)
        except ValueError:
            return "malformed expiry"
        if not hmac.compare_digest(self._mac(recipient, table_key, file, when), sig or ""):
            return "bad signature"
        if when < time.time():
            return "expired"
        return None
