"""The Delta Sharing server: the protocol's REST endpoints on Starlette, served by uvicorn.

Starlette and uvicorn are small, typed and widely used; Starlette's ``FileResponse`` answers
HEAD and Range requests, which clients use to read Parquet footers and column chunks.
Every refusal of a share, table or file another partner owns is a 404 whatever the path, so
names do not leak; a missing or unknown token is a 401, a bad or expired file URL a 403.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobs.config import Config
from jobs.delta.files import join
from jobs.share.catalog import Catalog, SharedTable
from jobs.share.files import Files
from jobs.share.predicates import file_filter
from jobs.share.protocol import (
    Refused,
    bad,
    choose_format,
    enough,
    feed,
    feed_protocol,
    file_line,
    header_lines,
    int_param,
    not_found,
    page,
    query_int,
    respond,
)  # fmt: skip
from jobs.share.recipients import Recipient, Recipients
from jobs.share.signing import Signer
from jobs.share.snapshot import SharedLog, VersionError, file_id, parse_time

access = logging.getLogger("jobs.share.access")


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
                self._wrap(
                    Files(
                        self.cfg.lake.root.removeprefix("file://"),
                        self.catalog,
                        self.recipients,
                        self.signer,
                    ),
                    auth=False,
                ),
                methods=["GET", "HEAD"],
            ),  # fmt: skip
        ]

    def _wrap(self, handler: Any, *, auth: bool = True) -> Any:
        return guarded(handler, self.recipients if auth else None)

    def _share(self, recipient: Recipient, request: Request) -> str:
        share = self.catalog.share(recipient.partner, request.path_params["share"])
        if share is None:
            raise not_found(f"share {request.path_params['share']!r}")
        return share

    def _table(self, recipient: Recipient, request: Request) -> SharedTable:
        share = self._share(recipient, request)
        p = request.path_params
        table = self.catalog.table(share, p["schema"], p["table"])
        if table is None:
            raise not_found(f"table {p['share']}.{p['schema']}.{p['table']}")
        return table

    def _log(self, table: SharedTable) -> SharedLog:
        return SharedLog(join(self.cfg.lake.root, table.path), self.storage_options)

    # --- listing ---------------------------------------------------------------------------

    async def list_shares(self, request: Request, recipient: Recipient) -> Response:
        names = self.catalog.shares_for(recipient.partner)
        return JSONResponse(page(request, [{"name": n, "id": n} for n in names]))

    async def get_share(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        return JSONResponse({"share": {"name": share, "id": share}})

    async def list_schemas(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        schemas = sorted({t.schema for t in self.catalog.tables(share)})
        return JSONResponse(page(request, [{"name": s, "share": share} for s in schemas]))

    def _table_items(self, tables: list[SharedTable]) -> list[dict]:
        return [{"name": t.name, "schema": t.schema, "share": t.share, "shareId": t.share,
                 "id": file_id(t.path)} for t in tables]  # fmt: skip

    async def list_tables(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        schema = request.path_params["schema"].lower()
        tables = self.catalog.tables(share, schema)
        if not tables:
            raise not_found(f"schema {share}.{schema}")
        return JSONResponse(page(request, self._table_items(tables)))

    async def all_tables(self, request: Request, recipient: Recipient) -> Response:
        share = self._share(recipient, request)
        return JSONResponse(page(request, self._table_items(self.catalog.tables(share))))

    # --- tables ----------------------------------------------------------------------------

    async def version(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        log = self._log(table)
        since = request.query_params.get("startingTimestamp")
        version = log.version_at(parse_time(since), at_or_after=True) if since else log.latest()
        access.info("version recipient=%s share=%s table=%s version=%d",
                    recipient.id, table.share, table.key, version)  # fmt: skip
        return Response(headers={"Delta-Table-Version": str(version)})

    async def metadata(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        snap = self._log(table).snapshot()
        fmt = choose_format(request, snap)
        access.info("metadata recipient=%s share=%s table=%s version=%d",
                    recipient.id, table.share, table.key, snap.version)  # fmt: skip
        return respond(header_lines(snap, fmt), snap.version, fmt)

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
            raise bad("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object")
        log = self._log(table)
        starting = int_param(body, "startingVersion")
        if starting is not None:
            return self._changes(request, recipient, table, log, starting,
                                 int_param(body, "endingVersion"), as_query=True)  # fmt: skip
        version = int_param(body, "version")
        if body.get("timestamp") is not None:
            version = log.version_at(parse_time(str(body["timestamp"])), at_or_after=False)
        snap = log.snapshot(version)
        fmt = choose_format(request, snap)
        keep = file_filter(body.get("jsonPredicateHints"), body.get("predicateHints"))
        files = [f for f in snap.files if keep(f["partitionValues"])]
        limit = int_param(body, "limitHint")
        if limit is not None:
            files = enough(files, limit)
        lines = header_lines(snap, fmt, version=snap.version if version is not None else None)
        lines += [file_line(*self._url(recipient, table, f["path"]), f, fmt) for f in files]
        access.info("query recipient=%s share=%s table=%s version=%d files=%d bytes=%d",
                    recipient.id, table.share, table.key, snap.version, len(files),
                    sum(f["size"] for f in files))  # fmt: skip
        return respond(lines, snap.version, fmt)

    async def changes(self, request: Request, recipient: Recipient) -> Response:
        table = self._table(recipient, request)
        log, q = self._log(table), request.query_params
        first, last = query_int(q, "startingVersion"), query_int(q, "endingVersion")
        if q.get("startingTimestamp"):
            first = log.version_at(parse_time(q["startingTimestamp"]), at_or_after=True)
        if q.get("endingTimestamp"):
            last = log.version_at(parse_time(q["endingTimestamp"]), at_or_after=False)
        if first is None:
            raise bad("changes need startingVersion or startingTimestamp")
        return self._changes(request, recipient, table, log, first, last,
                             history=q.get("includeHistoricalMetadata", "").lower() == "true")  # fmt: skip

    def _changes(self, request: Request, recipient: Recipient, table: SharedTable, log: SharedLog,
                 first: int, last: int | None, *, history: bool = True, as_query: bool = False) -> Response:  # fmt: skip
        latest = log.latest()
        last = latest if last is None else last
        if not 0 <= first <= last <= latest:
            raise VersionError(f"versions {first}..{last} are not within 0..{latest}")
        snap = log.snapshot(first)  # the metadata the range starts from; later ones follow
        fmt = choose_format(request, snap)
        snap = replace(snap, metadata=feed(snap.metadata), protocol=feed_protocol(snap.protocol))
        lines = header_lines(snap, fmt, version=first)
        files = 0
        for version, when, kind, action in log.changes(first, last):
            if kind == "metaData":
                if (history or as_query) and version > first:  # the first is the header's
                    meta = {"deltaMetadata": feed(action)} if fmt == "delta" else {
                        k: v for k, v in action.items() if k != "createdTime"}  # fmt: skip
                    lines.append({"metaData": {**meta, "version": version}})
                continue
            lines.append(
                file_line(
                    *self._url(recipient, table, action["path"]), action, fmt, kind, version, when
                )
            )
            files += 1
        access.info("changes recipient=%s share=%s table=%s versions=%d..%d files=%d",
                    recipient.id, table.share, table.key, first, last, files)  # fmt: skip
        return respond(lines, first, fmt)

    # --- files -----------------------------------------------------------------------------


def guarded(handler: Any, recipients: Recipients | None) -> Any:
    """An endpoint that authenticates the bearer token (unless ``recipients`` is None) and turns
    refusals into the protocol's JSON errors; other errors are logged and answered with 500."""

    async def endpoint(request: Request) -> Response:
        try:
            if recipients is None:
                return await handler(request)
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            recipient = recipients.authenticate(
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
            return JSONResponse({"errorCode": "INVALID_PARAMETER_VALUE", "message": str(exc)}, 400)
        except Exception:
            logging.getLogger(__name__).exception("internal error on %s", request.url.path)
            return JSONResponse({"errorCode": "INTERNAL_ERROR", "message": "internal error"}, 500)

    return endpoint


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
