"""File URLs on Azure storage: a read-only SAS of the blob, signed with the account key from
the lake's storage options (a secret in the environment), valid for ``[share] url_ttl_s``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlparse

from jobs.config import Config
from jobs.errors import ConfigError


def sas_url(cfg: Config, storage_options: dict[str, str], path: str, ttl_s: int) -> tuple[str, int]:
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    root = urlparse(cfg.lake.root)
    account = (
        storage_options.get("azure_storage_account_name") or (root.hostname or "").split(".")[0]
    )
    key = storage_options.get("azure_storage_account_key")
    if not key:
        raise ConfigError("share: signing Azure file URLs needs azure_storage_account_key in the "
                          "lake's storage options ([lake].storage_options_env)")  # fmt: skip
    container = root.username or root.netloc  # abfss://container@account... or az://container
    blob = "/".join(p for p in (root.path.strip("/"), path) if p)
    endpoint = (
        storage_options.get("azure_storage_endpoint") or f"https://{account}.blob.core.windows.net"
    )
    expiry = datetime.now(UTC) + timedelta(seconds=ttl_s)
    sas = generate_blob_sas(account, container, blob, account_key=key,
                            permission=BlobSasPermissions(read=True), expiry=expiry)  # fmt: skip
    return f"{endpoint.rstrip('/')}/{container}/{quote(blob)}?{sas}", int(expiry.timestamp() * 1000)
