"""The `llmnas` executable. A Ctrl-C while the program is still importing exits quietly with status 130
(nothing has started yet); after that, cli.main turns it into a clean stop."""

from __future__ import annotations

import os
import signal


def _quiet_exit(signum, frame) -> None:
    os._exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _quiet_exit)
    from llmnas.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(cli_main())
