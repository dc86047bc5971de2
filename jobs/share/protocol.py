"""The protocol's response shapes: errors, pages, the response format, and the JSON lines of
a table's protocol, metadata and files, in the ``parquet`` and ``delta`` formats."""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from jobs.share.snapshot import Snapshot, file_id

NDJSON = "application/x-ndjson; charset=utf-8"
MAX_PAGE = 1000


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(what: str) -> Refused:
    return Refused(
        404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist or is not shared with you"
    )


def bad(message: str) -> Refused:
    return Refused(400, "INVALID_PARAMETER_VALUE", message)


def page(request: Request, items: list[dict]) -> dict:
    """One page of ``items``: ``maxResults`` of them from the ``pageToken`` on."""
    try:
        size = int(request.query_params.get("maxResults", MAX_PAGE))
        token = request.query_params.get("pageToken")
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise bad("maxResults must be a number and pageToken one this server returned") from None
    if size < 0 or start < 0:
        raise bad("maxResults and pageToken must not be negative")
    size = min(size or MAX_PAGE, MAX_PAGE)
    body: dict[str, Any] = {"items": items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return body


def formats(request: Request) -> list[str]:
    """The response formats a client accepts (``delta-sharing-capabilities``), in its order."""
    for part in request.headers.get("delta-sharing-capabilities", "").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "responseformat":
            return [v.strip().lower() for v in value.split(",") if v.strip()]
    return ["parquet"]


def choose_format(request: Request, snap: Snapshot) -> str:
    accepted = formats(request)
    if "parquet" in accepted and snap.protocol["minReaderVersion"] <= 1:
        return "parquet"  # every client reads it, and this table needs nothing more
    if "delta" in accepted:
        return "delta"
    raise bad("this table needs a client that accepts responseformat=delta")


def header_lines(snap: Snapshot, fmt: str, *, version: int | None = None) -> list[dict]:
    extra = {"size": snap.size, "numFiles": len(snap.files)}
    if version is not None:
        extra["version"] = version
    if fmt == "delta":
        return [{"protocol": {"deltaProtocol": snap.protocol}},
                {"metaData": {"deltaMetadata": snap.metadata, **extra}}]  # fmt: skip
    meta = {k: v for k, v in snap.metadata.items() if k not in ("createdTime",) and v is not None}
    meta["format"] = {"provider": "parquet"}
    return [{"protocol": {"minReaderVersion": 1}}, {"metaData": {**meta, **extra}}]


def respond(lines: list[dict], version: int, fmt: str) -> Response:
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return Response(body, media_type=NDJSON, headers={
        "Delta-Table-Version": str(version), "delta-sharing-capabilities": f"responseformat={fmt}"})  # fmt: skip


def file_line(url: str, expires: int, action: dict, fmt: str, kind: str = "file",
              version: int | None = None, when: int | None = None) -> dict:  # fmt: skip
    """One file of a response: ``url`` is where the client reads ``action``'s file."""
    stamp = {} if version is None else {"version": version, "timestamp": when}
    if fmt == "delta":
        delta_kind = {"file": "add", "cdf": "cdc"}.get(kind, kind)
        return {"file": {"id": file_id(action["path"]), "expirationTimestamp": expires, **stamp,
                         "deltaSingleAction": {delta_kind: {**action, "path": url}}}}  # fmt: skip
    line = {"url": url, "id": file_id(action["path"]), "expirationTimestamp": expires,
            "partitionValues": action.get("partitionValues") or {}, "size": action.get("size", 0),
            **stamp}  # fmt: skip
    if action.get("stats") and kind in ("file", "add"):
        line["stats"] = action["stats"]
    return {kind: line}


def feed(metadata: dict) -> dict:
    """Metadata that lets a reader replay the changes we send (docs/design.md: the change feed
    is each commit's added and removed files, or its change data files where it wrote some)."""
    conf = {**(metadata.get("configuration") or {}), "delta.enableChangeDataFeed": "true"}
    return {**metadata, "configuration": conf}


def feed_protocol(protocol: dict) -> dict:
    if protocol["minWriterVersion"] < 7:
        return {**protocol, "minWriterVersion": max(protocol["minWriterVersion"], 4)}
    features = sorted({*protocol.get("writerFeatures", ()), "changeDataFeed"})
    return {**protocol, "writerFeatures": features}


def enough(files: list[dict], limit: int) -> list[dict]:
    """The first files whose rows reach ``limit`` (all of them when a file has no row count)."""
    out, rows = [], 0
    for f in files:
        if rows >= limit:
            break
        count = json.loads(f["stats"]).get("numRecords") if f.get("stats") else None
        if count is None:
            return files
        out.append(f)
        rows += count
    return out


def int_param(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise bad(f"{key} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise bad(f"{key} must be an integer") from None


def query_int(query: Any, key: str) -> int | None:
    return int_param(dict(query), key)
