"""Arguments every configured command takes."""

from __future__ import annotations

import argparse

DEFAULT_CONF = "conf/local.toml"


def conf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--conf", default=DEFAULT_CONF, help=f"configuration file (default {DEFAULT_CONF})"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one configuration value for this run (repeatable)",
    )
