"""Text from candidates and models, made safe to show: control characters escaped.

A candidate's exception text can hold terminal escape sequences (erase a line, print a fake result, set
the window title) or carriage returns. Everything the driver shows, logs, puts in a prompt or a report
passes through :func:`escape_controls`: C0 and C1 controls, DEL and the ESC of every sequence become
visible escapes (``\\x1b``); newline and tab stay.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with every control character but newline and tab written as a visible escape."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
