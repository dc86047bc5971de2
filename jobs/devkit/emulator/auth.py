"""SAS tokens as Event Hubs checks them: a ``$cbs`` put-token carries
``SharedAccessSignature sr=<resource>&sig=<signature>&se=<expiry>&skn=<key name>``; the signature
is the Base64 HMAC-SHA256, under the named key, of the URL-encoded resource, a newline and the
expiry. A connection may attach a link only to an entity that one of its accepted tokens covers.

The default key is the official emulator's development key (``RootManageSharedAccessKey`` /
``SAS_KEY_VALUE``), so ``UseDevelopmentEmulator=true`` connection strings keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from urllib.parse import unquote, urlparse

DEV_KEYS = {"RootManageSharedAccessKey": "SAS_KEY_VALUE"}


def keys_from_env(name: str | None) -> dict[str, str]:
    """``name=key;name2=key2`` from the variable ``name`` (the development key when unset)."""
    raw = os.environ.get(name) if name else None
    if not raw:
        return dict(DEV_KEYS)
    pairs = [item.partition("=") for item in raw.split(";") if item.strip()]
    return {k.strip(): v for k, _, v in pairs}


def _entity(resource: str) -> list[str]:
    """The path of a resource URI as lower-case parts (``sb://host/hub/...`` -> [hub, ...])."""
    parsed = urlparse(resource if "://" in resource else f"sb://{resource}")
    return [p for p in parsed.path.lower().split("/") if p]


def check_token(
    keys: dict[str, str], token: str, audience: str, kind: str = "servicebus.windows.net:sastoken"
) -> tuple[int, str, list[str]]:
    """(status, description, entity path covered) of a put-token: 202 when the token is valid
    and covers ``audience``, else 401 with Event Hubs' reason. Entra ID tokens (``jwt``) cannot
    be verified without Entra ID: they are accepted for their audience, as the official
    emulator accepts them."""
    if kind == "jwt":
        return 202, "Accepted", _entity(audience)
    if not token.startswith("SharedAccessSignature "):
        return 401, "InvalidSignature: The token is not a SharedAccessSignature.", []
    fields = dict(
        part.partition("=")[::2] for part in token[len("SharedAccessSignature ") :].split("&")
    )
    resource, signature, expiry, key_name = (fields.get(k, "") for k in ("sr", "sig", "se", "skn"))
    key = keys.get(key_name)
    if key is None:
        return (
            401,
            f"InvalidSignature: The key name '{key_name}' is not valid for this namespace.",
            [],
        )
    expected = hmac.new(key.encode(), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(expected).decode(), unquote(signature)):
        return 401, "InvalidSignature: The token has an invalid signature.", []
    if not expiry.isdigit() or int(expiry) < time.time():
        return 401, f"ExpiredToken: The token is expired. Expiration time: '{expiry}'.", []
    covered = _entity(unquote(resource))
    if covered != _entity(audience)[: len(covered)]:
        return 401, f"InvalidAudience: The token's resource does not cover '{audience}'.", []
    return 202, "Accepted", covered


def covers(granted: list[list[str]], address: str) -> bool:
    """Whether an accepted token covers the entity of a link address (``hub/...``)."""
    wanted = _entity(address)
    return any(wanted[: len(path)] == path for path in granted)
