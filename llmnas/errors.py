"""The two kinds of failure a user sees as one line (anything else is a bug and shows its traceback).

``UserError``: bad input the user can fix (a flag, a file, a dataset, requirements): exit status 2.
``RunFailed``: the run cannot go on (an endpoint that is down, a disk that is full or read-only); what
finished is saved and ``llmnas resume`` continues: exit status 1.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, with a message that says what to change."""


class RunFailed(Exception):
    """The run stopped for a reason outside it; finished work is saved."""
