"""The Delta Sharing commands: ``share-server`` and ``share-recipient``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from jobs.cli.args import conf_args
from jobs.config import load_config, storage_options
from jobs.errors import ConfigError


def add(commands: Any) -> None:
    server = commands.add_parser(
        "share-server",
        help="serve the published tables over the Delta Sharing protocol",
        description="Each recipient reads its partner's share (partners/<id>/: schemas events and "
        "gold) and the alliance share, with any Delta Sharing client (pandas, Spark, Power BI). "
        "File URLs are signed with the key in [share].url_key_env and expire after "
        "[share].url_ttl_s. Stop it with Ctrl-C.",
    )
    conf_args(server)
    server.add_argument("--host", help="address to listen on (default [share].host, 127.0.0.1)")
    server.add_argument("--port", type=int, help="port (default [share].port; 0: any free port)")
    server.set_defaults(handler=_server)

    recipient = commands.add_parser(
        "share-recipient",
        help="create, list, rotate or revoke the tokens partners read with",
        description="A recipient is one bearer token for one partner. `create` and `rotate` write "
        "the profile file the partner's client reads; the token is shown nowhere else and stored "
        "only as a hash.",
    )
    actions = recipient.add_subparsers(title="actions", metavar="<action>", required=True)
    create = actions.add_parser("create", help="a new recipient for a partner; writes its profile")
    conf_args(create)
    create.add_argument("--partner", required=True, help="the partner id ([[partners]] id)")
    _profile_args(create)
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="every recipient, without tokens")
    conf_args(listing)
    listing.set_defaults(handler=_list)
    rotate = actions.add_parser("rotate", help="a new token for a recipient; the old one stops")
    conf_args(rotate)
    rotate.add_argument("id", help="the recipient id (see `list`)")
    _profile_args(rotate)
    rotate.set_defaults(handler=_rotate)
    revoke = actions.add_parser("revoke", help="refuse a recipient's token and file URLs at once")
    conf_args(revoke)
    revoke.add_argument("id", help="the recipient id (see `list`)")
    revoke.set_defaults(handler=_revoke)


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expires-in", type=_duration, metavar="DURATION",
                   help="token life: 90d, 12h, 30m (default [share].token_days days)")  # fmt: skip
    p.add_argument("--out", metavar="FILE",
                   help="write the profile here (default: standard output)")  # fmt: skip
    p.add_argument("--endpoint", help="the server URL in the profile (default [share].endpoint)")


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"expected a number and d, h or m (e.g. 90d); got {text!r}"
        )
    unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _server(args: argparse.Namespace) -> int:
    from jobs.share.server import serve
    from jobs.share.signing import url_key

    cfg = load_config(args.conf, args.overrides)
    host = args.host or cfg.share.host
    port = cfg.share.port if args.port is None else args.port
    serve(cfg, storage_options(cfg), host=host, port=port, key=url_key(cfg.share.url_key_env))
    return 0


def _write_profile(args: argparse.Namespace, cfg: Any, recipient: Any, token: str) -> None:
    from jobs.share.recipients import profile

    doc = json.dumps(profile(args.endpoint or cfg.share.endpoint_url(), token, recipient), indent=2)
    if args.out:
        out = Path(args.out)
        out.write_text(doc + "\n", encoding="utf-8")
        out.chmod(0o600)
        print(f"recipient {recipient.id} ({recipient.partner}), expires {recipient.expires}: "
              f"profile written to {out}", file=sys.stderr)  # fmt: skip
    else:
        print(doc)


def _create(args: argparse.Namespace) -> int:
    from jobs.share.recipients import Recipients

    cfg = load_config(args.conf, args.overrides)
    recipient, token = Recipients(cfg).create(args.partner, expires_in=args.expires_in)
    _write_profile(args, cfg, recipient, token)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from jobs.share.recipients import Recipients

    cfg = load_config(args.conf, args.overrides)
    recipient, token = Recipients(cfg).rotate(args.id, expires_in=args.expires_in)
    _write_profile(args, cfg, recipient, token)
    return 0


def _list(args: argparse.Namespace) -> int:
    from jobs.share.recipients import Recipients

    cfg = load_config(args.conf, args.overrides)
    rows = Recipients(cfg).all()
    print(f"{'id':<28} {'partner':<20} {'expires':<26} status")
    for r in rows:
        status = "revoked" if r.revoked else ("active" if r.active() else "expired")
        print(f"{r.id:<28} {r.partner:<20} {r.expires:<26} {status}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from jobs.share.recipients import Recipients

    cfg = load_config(args.conf, args.overrides)
    if not args.id:
        raise ConfigError("revoke: name the recipient id")
    r = Recipients(cfg).revoke(args.id)
    print(f"recipient {r.id} ({r.partner}) revoked at {r.revoked}", file=sys.stderr)
    return 0
