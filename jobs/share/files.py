"""File downloads on local storage: a signed URL, checked, then the file with Range support."""

from __future__ import annotations

import logging
import os
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from jobs.share.catalog import Catalog
from jobs.share.protocol import Refused, not_found
from jobs.share.recipients import Recipients
from jobs.share.signing import Signer

access = logging.getLogger("jobs.share.access")


class Files:
    """``GET|HEAD /files/<share.schema.table>/<file>?rid&se&sig``: no bearer token (clients fetch
    file URLs as they are); the signature, its expiry, the recipient's standing and the path
    decide."""

    def __init__(self, root: str, catalog: Catalog, recipients: Recipients, signer: Signer) -> None:
        self.root, self.catalog, self.recipients, self.signer = root, catalog, recipients, signer

    async def __call__(self, request: Request) -> Response:
        key, path, q = request.path_params["key"], request.path_params["file"], request.query_params
        rid = q.get("rid", "")
        why = self.signer.check(rid, key, path, q.get("se", ""), q.get("sig", ""))
        if why is not None:
            raise Refused(403, "PERMISSION_DENIED", f"file URL refused: {why}")
        recipient = self.recipients.get(rid)
        if recipient is None or not recipient.active():
            raise Refused(
                403, "PERMISSION_DENIED", "file URL refused: its recipient is no longer active"
            )
        share, _, rest = key.partition(".")
        schema, _, name = rest.partition(".")
        visible = self.catalog.share(recipient.partner, share)
        table = self.catalog.table(visible, schema, name) if visible else None
        if table is None:
            raise not_found("file")
        target = safe_path(self.root, table.path, path)
        if target is None:
            raise not_found("file")
        access.info("file recipient=%s share=%s table=%s file=%s bytes=%d range=%s",
                    recipient.id, table.share, table.key, path, os.path.getsize(target),
                    request.headers.get("range", "all"))  # fmt: skip
        return _File(target, media_type="application/octet-stream")


def safe_path(root: str, table_path: str, file: str) -> str | None:
    """The file's real path if it lies inside the table's folder, is a regular file and no part
    of it is a link; None otherwise (``..``, absolute paths, links out of the table)."""
    if (
        not file
        or file.startswith("/")
        or "\\" in file
        or any(part in ("", ".", "..") for part in file.split("/"))
    ):
        return None
    base = os.path.realpath(os.path.join(root, table_path))
    candidate = os.path.join(base, unquote(file))  # log paths are URIs: %20 is a space on disk
    real = os.path.realpath(candidate)
    if real != os.path.normpath(candidate) or os.path.commonpath([base, real]) != base:
        return None
    return real if os.path.isfile(real) else None


class _File(FileResponse):
    chunk_size = 1024 * 1024  # Starlette's 64 KiB costs a thread hop per chunk
