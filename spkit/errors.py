"""The one base class of the mistakes a user can make (a missing folder, a mistyped option, a file of the
wrong kind). The ``spkit`` command line turns any :class:`UserError` into one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the problem and, where there is one, the file."""
