"""``python -m jobs <command>``: parse arguments, load configuration, call the job, map errors.

No logic lives here: each command hands a typed configuration to a ``run`` function.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobs import __version__
from jobs.cli import local, pipeline, share
from jobs.errors import JobsError

logger = logging.getLogger("jobs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    # a command's own progress and results are its output; logs add to them only what needs
    # attention (-v: everything, other libraries' debug lines included)
    level = logging.DEBUG if args.verbose else getattr(args, "log_level", logging.INFO)
    if not args.verbose:
        handler.addFilter(lambda r: r.name.startswith("jobs") or r.levelno >= logging.WARNING)
    logging.basicConfig(level=level, handlers=[handler])
    try:
        return int(args.handler(args) or 0)
    except JobsError as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        logger.warning("interrupted")
        return 130


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: UTC time, level, logger, message (secrets are never
    logged in the first place), and the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            doc["data"] = data  # structured facts: a batch's metrics, an alert
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs",
        description="Vehicle event jobs: Event Hubs -> Great Expectations -> Delta Lake.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and Spark's own output on the terminal")  # fmt: skip
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="text (default) or json: one JSON object per line, for log "
                        "collectors (time, level, logger, message, exception)")  # fmt: skip
    commands = parser.add_subparsers(title="commands", metavar="<command>", required=True)

    pipeline.add(commands)
    local.add(commands)
    share.add(commands)
    return parser
