"""The alliance's pseudonym keys, from the environment (or a secret store that fills it)."""

from __future__ import annotations

from datetime import date

from jobs.config import Config, resolve_secret
from jobs.errors import ConfigError
from jobs.stages.sharing import MIN_KEY_BYTES, KeyRing, KeyVersion


def key_ring(cfg: Config) -> KeyRing:
    """Version 1 from ``[sharing] pseudonym_key_env``, then each ``[[sharing.key_rotations]]``.

    Raises:
        SecretNotFoundError: a variable is not set (the message names it, never a value).
        ConfigError: a key is shorter than 32 bytes.
    """
    sharing = cfg.sharing
    named = [(1, sharing.pseudonym_key_env, date.min, "[sharing].pseudonym_key_env")]
    named += [
        (r.version, r.key_env, date.fromisoformat(r.from_date), "[[sharing.key_rotations]]")
        for r in sharing.key_rotations
    ]
    versions = []
    for version, env, since, setting in named:
        key = resolve_secret(env, purpose=f"alliance pseudonym key version {version}").encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"environment variable {env} ({cfg.path} {setting}) holds a key of {len(key)} "
                f"bytes; the alliance key needs at least {MIN_KEY_BYTES} (e.g. "
                f"`openssl rand -base64 48`)"
            )
        versions.append(KeyVersion(version, key, since))
    return KeyRing(versions)
