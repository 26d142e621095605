"""The one base class of the mistakes a user can make (a missing folder, a mistyped option, a file of the
wrong kind). The ``spkit`` command line turns any :class:`UserError` into one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message names the problem and, where there is one, the file."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file spkit cannot use: unknown layout, unsupported architecture, weights that do not fit
    (HuBERT, tiny HuBERT or uLM alike). Keeps ``path`` and ``problem``; the message is ``path: problem``."""

    def __init__(self, path: object, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")
