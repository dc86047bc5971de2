"""The Delta Sharing server: the protocol's REST endpoints on Starlette, served by uvicorn.

Starlette and uvicorn are small, typed and widely used; Starlette's ``FileResponse`` answers
HEAD and Range requests, which clients use to read Parquet footers and column chunks.
Every refusal of a share, table or file another partner owns is a 404 whatever the path, so
names do not leak; a missing or unknown token is a 401, a bad or expired file URL a 403.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from jobs.config import Config
from jobs.delta.files import join
from jobs.share.catalog import Catalog, SharedTable
from jobs.share.predicates import file_filter
from jobs.share.recipients import Recipient, Recipients
from jobs.share.signing import Signer
from jobs.share.snapshot import SharedLog, Snapshot, VersionError, file_id, parse_time

access = logging.getLogger("jobs.share.access")
NDJSON = "application/x-ndjson; charset=utf-8"
MAX_PAGE = 1000


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _not_found(what: str) -> Refused:
    return Refused(
        404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist or is not shared with you"
    )


def _bad(message: str) -> Refused:
    return Refused(400, "INVALID_PARAMETER_VALUE", message)


def _page(request: Request, items: list[dict]) -> dict:
    """One page of ``items``: ``maxResults`` of them from the ``pageToken`` on."""
    try:
        size = int(request.query_params.get("maxResults", MAX_PAGE))
        token = request.query_params.get("pageToken")
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise _bad("maxResults must be a number and pageToken one this server returned") from None
    if size < 0 or start < 0:
        raise _bad("maxResults and pageToken must not be negative")
    size = min(size or MAX_PAGE, MAX_PAGE)
    body: dict[str, Any] = {"items": items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return body


def _formats(request: Request) -> list[str]:
    """The response formats a client accepts (``delta-sharing-capabilities``), in its order."""
    for part in request.headers.get("delta-sharing-capabilities", "").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "responseformat":
            return [v.strip().lower() for v in value.split(",") if v.strip()]
    return ["parquet"]


class SharingApp:
    """The routes, over one configuration's lake, recipients and URL signer."""

    def __init__(self, cfg: Config, storage_options: dict[str, str], signer: Signer) -> None:
        self.cfg, self.storage_options, self.signer = cfg, storage_options, signer
        self.catalog = Catalog(cfg, storage_options)
        self.recipients = Recipients(cfg)
        self.local = "://" not in cfg.lake.root or cfg.lake.root.startswith("file://")

    # --- plumbing -------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = "/delta-sharing/shares"
        table = base + "/{share}/schemas/{schema}/tables/{table}"
        return [
            Route(base, self._wrap(self.list_shares)),
            Route(base + "/{share}", self._wrap(self.get_share)),
            Route(base + "/{share}/schemas", self._wrap(self.list_schemas)),
            Route(base + "/{share}/schemas/{schema}/tables", self._wrap(self.list_tables)),
            Route(base + "/{share}/all-tables", self._wrap(self.all_tables)),
            Route(table + "/version", self._wrap(self.version), methods=["GET", "HEAD"]),
            Route(table + "/metadata", self._wrap(self.metadata)),
            Route(table + "/query", self._wrap(self.query), methods=["POST"]),
            Route(table + "/changes", self._wrap(self.changes)),
            Route(
                "/delta-sharing/files/{key}/{file:path}",
                self._wrap(self.file, auth=False),
                methods=["GET", "HEAD"],
            ),  # fmt: skip
        ]

    def _wrap(self, handler: Any, *, auth: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                if not auth:
                    return await handler(request)
                header = request.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                recipient = self.recipients.authenticate(
                    token.strip() if scheme.lower() == "bearer" else None
                )
                if recipient is None:
                    raise Refused(
                        401, "UNAUTHENTICATED", "missing, unknown, expired or revoked bearer token"
                    )
                return await handler(request, recipient)
            except Refused as exc:
                return JSONResponse({"errorCode": exc.code, "message": exc.message}, exc.status)
            except VersionError as exc:
                return JSONResponse(
                    {"errorCode": "INVALID_PARAMETER_VALUE", "message": str(exc)}, 400
                )
            except Exception:
                logging.getLogger(__name__).exception("internal error on %s", request.url.path)
                return JSONResponse(
                    {"errorCode": "INTERNAL_ERROR", "message": "internal error"}, 500
                )

        return endpoint

    def _share(self, recipient: Recipient, request: Request) -> str:
        share = self.catalog.share(recipient.partner, request.path_params["share"])
        if share is None:
            raise _not_found(f"share {request.path_params['share']!r}")
        return share

    def _table(self, recipient: Recipient, request: Request) -> SharedTable:
        share = self._share(recipient, request)
        p = request.path_params
        table = self.catalog.table(share, p["schema"], p["table"])
        if table is None:
            raise _not_found(f"table {p['share']}.{p['schema']}.{p['table']}")
        return table

    def _log(self, table: SharedTable) -> SharedLog:
        return SharedLog(join(self.cfg.lake.root, table.path), self.storage_options)

    # --- listing ---------------------------------------------------------------------------

    async def list_shares(self, request: Request, recipient: Recipient) -> Response:
        names = self.catalog.shares_for(recipient.partner)
        return JSONResponse(_page(request, [{"name": n, "id": n} for n in names]))

    async def get_share(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        return JSONResponse({"share": {"name": share, "id": share}})

    async def list_schemas(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        schemas = sorted({t.schema for t in self.catalog.tables(share)})
        return JSONResponse(_page(request, [{"name": s, "share": share} for s in schemas]))

    def _table_items(self, tables: list[SharedTable]) -> list[dict]:
        return [{"name": t.name, "schema": t.schema, "share": t.share, "shareId": t.share,
                 "id": file_id(t.path)} for t in tables]  # fmt: skip

    async def list_tables(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        schema = request.path_params["schema"].lower()
        tables = self.catalog.tables(share, schema)
        if not tables:
            raise _not_found(f"schema {share}.{schema}")
        return JSONResponse(_page(request, self._table_items(tables)))

    async def all_tables(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        return JSONResponse(_page(request, self._table_items(self.catalog.tables(share))))

    # --- tables ----------------------------------------------------------------------------

    async def version(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        log = self._log(table)
        since = request.query_params.get("startingTimestamp")
        version = log.version_at(parse_time(since), at_or_after=True) if since else log.latest()
        return Response(headers={"Delta-Table-Version": str(version)})

    def _format(self, request: Request, snap: Snapshot) -> str:
        accepted = _formats(request)
        if "parquet" in accepted and snap.protocol["minReaderVersion"] <= 1:
            return "parquet"  # every client reads it, and this table needs nothing more
        if "delta" in accepted:
            return "delta"
        raise _bad("this table needs a client that accepts responseformat=delta")

    def _header_lines(self, snap: Snapshot, fmt: str, *, version: int | None = None) -> list[dict]:
        extra = {"size": snap.size, "numFiles": len(snap.files)}
        if version is not None:
            extra["version"] = version
        if fmt == "delta":
            return [{"protocol": {"deltaProtocol": snap.protocol}},
                    {"metaData": {"deltaMetadata": snap.metadata, **extra}}]  # fmt: skip
        meta = {
            k: v for k, v in snap.metadata.items() if k not in ("createdTime",) and v is not None
        }
        meta["format"] = {"provider": "parquet"}
        return [{"protocol": {"minReaderVersion": 1}}, {"metaData": {**meta, **extra}}]

    def _respond(self, lines: list[dict], version: int, fmt: str) -> Response:
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        return Response(body, media_type=NDJSON, headers={
            "Delta-Table-Version": str(version), "delta-sharing-capabilities": f"responseformat={fmt}"})  # fmt: skip

    async def metadata(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        snap = self._log(table).snapshot()
        fmt = self._format(request, snap)
        return self._respond(self._header_lines(snap, fmt), snap.version, fmt)

    def _file_line(self, recipient: Recipient, table: SharedTable, action: dict, fmt: str,
                   kind: str = "file", version: int | None = None, when: int | None = None) -> dict:  # fmt: skip
        url, expires = self._url(recipient, table, action["path"])
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

    def _url(self, recipient: Recipient, table: SharedTable, path: str) -> tuple[str, int]:
        if self.local:
            return self.signer.url(recipient.id, table.key, path)
        from jobs.share.azure import sas_url

        return sas_url(self.cfg, self.storage_options, f"{table.path}/{path}", self.signer.ttl_s)

    async def query(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise _bad("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        log = self._log(table)
        starting = _int(body, "startingVersion")
        if starting is not None:
            return self._changes(request, recipient, table, log, starting,
                                 _int(body, "endingVersion"), as_query=True)  # fmt: skip
        version = _int(body, "version")
        if body.get("timestamp") is not None:
            version = log.version_at(parse_time(str(body["timestamp"])), at_or_after=False)
        snap = log.snapshot(version)
        fmt = self._format(request, snap)
        keep = file_filter(body.get("jsonPredicateHints"), body.get("predicateHints"))
        files = [f for f in snap.files if keep(f["partitionValues"])]
        limit = _int(body, "limitHint")
        if limit is not None:
            files = _enough(files, limit)
        lines = self._header_lines(snap, fmt, version=snap.version if version is not None else None)
        lines += [self._file_line(recipient, table, f, fmt) for f in files]
        access.info("query recipient=%s share=%s table=%s version=%d files=%d bytes=%d",
                    recipient.id, table.share, table.key, snap.version, len(files),
                    sum(f["size"] for f in files))  # fmt: skip
        return self._respond(lines, snap.version, fmt)

    async def changes(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        log, q = self._log(table), request.query_params
        first, last = _qint(q, "startingVersion"), _qint(q, "endingVersion")
        if q.get("startingTimestamp"):
            first = log.version_at(parse_time(q["startingTimestamp"]), at_or_after=True)
        if q.get("endingTimestamp"):
            last = log.version_at(parse_time(q["endingTimestamp"]), at_or_after=False)
        if first is None:
            raise _bad("changes need startingVersion or startingTimestamp")
        return self._changes(request, recipient, table, log, first, last,
                             history=q.get("includeHistoricalMetadata", "").lower() == "true")  # fmt: skip

    def _changes(self, request: Request, recipient: Recipient, table: SharedTable, log: SharedLog,
                 first: int, last: int | None, *, history: bool = True, as_query: bool = False) -> Response:  # fmt: skip
        latest = log.latest()
        last = latest if last is None else last
        if not 0 <= first <= last <= latest:
            raise VersionError(f"versions {first}..{last} are not within 0..{latest}")
        snap = log.snapshot(first)  # the metadata the range starts from; later ones follow
        fmt = self._format(request, snap)
        snap = replace(snap, metadata=_feed(snap.metadata), protocol=_feed_protocol(snap.protocol))
        lines = self._header_lines(snap, fmt, version=first)
        files = 0
        for version, when, kind, action in log.changes(first, last):
            if kind == "metaData":
                if (history or as_query) and version > first:  # the first is the header's
                    meta = {"deltaMetadata": _feed(action)} if fmt == "delta" else {
                        k: v for k, v in action.items() if k != "createdTime"}  # fmt: skip
                    lines.append({"metaData": {**meta, "version": version}})
                continue
            lines.append(self._file_line(recipient, table, action, fmt, kind, version, when))
            files += 1
        access.info("changes recipient=%s share=%s table=%s versions=%d..%d files=%d",
                    recipient.id, table.share, table.key, first, last, files)  # fmt: skip
        return self._respond(lines, first, fmt)

    # --- files -----------------------------------------------------------------------------

    async def file(self, request: Request) -> Response:
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
            raise _not_found("file")
        target = safe_path(self.cfg.lake.root.removeprefix("file://"), table.path, path)
        if target is None:
            raise _not_found("file")
        access.info("file recipient=%s share=%s table=%s file=%s range=%s",
                    recipient.id, table.share, table.key, path, request.headers.get("range", "all"))  # fmt: skip
        return FileResponse(target, media_type="application/octet-stream")


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


def _feed(metadata: dict) -> dict:
    """Metadata that lets a reader replay the changes we send (docs/design.md: the change feed
    is each commit's added and removed files, or its change data files where it wrote some)."""
    conf = {**(metadata.get("configuration") or {}), "delta.enableChangeDataFeed": "true"}
    return {**metadata, "configuration": conf}


def _feed_protocol(protocol: dict) -> dict:
    if protocol["minWriterVersion"] < 7:
        return {**protocol, "minWriterVersion": max(protocol["minWriterVersion"], 4)}
    features = sorted({*protocol.get("writerFeatures", ()), "changeDataFeed"})
    return {**protocol, "writerFeatures": features}


def _enough(files: list[dict], limit: int) -> list[dict]:
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


def _int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(f"{key} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise _bad(f"{key} must be an integer") from None


def _qint(query: Any, key: str) -> int | None:
    return _int(dict(query), key)


def build_app(cfg: Config, storage_options: dict[str, str], signer: Signer) -> Starlette:
    return Starlette(routes=SharingApp(cfg, storage_options, signer).routes())


def serve(
    cfg: Config, storage_options: dict[str, str], *, host: str, port: int, key: bytes
) -> None:
    """Run the server until interrupted. With port 0 the system picks a free one; the line
    ``serving <endpoint>`` on stdout names it."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    bound = sock.getsockname()[1]
    endpoint = (
        cfg.share.endpoint_url(bound)
        if cfg.share.endpoint
        else f"http://{host}:{bound}/delta-sharing"
    )
    app = build_app(cfg, storage_options, Signer(key, endpoint, cfg.share.url_ttl_s))
    print(f"serving {endpoint}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
