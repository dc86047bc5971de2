"""Entry point for ``python -m jobs``.

The process ends with ``os._exit`` after flushing output: with deltalake 1.6 and pyarrow 23, Arrow
scanner threads started by a Delta scan can outlive Arrow's own teardown at interpreter exit and
abort the process ("terminate called without an active exception", exit 134) after all work
succeeded. Every command closes what it opened (Spark sessions, clients, files) before returning,
so skipping the interpreter's teardown loses nothing and makes the exit code the command's own.
"""

import logging
import os
import sys

from jobs.cli import main


def run() -> None:
    """``python -m jobs`` and the ``vehicle-jobs`` script: the command, then a clean exit."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
