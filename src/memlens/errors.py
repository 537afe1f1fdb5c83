"""One exception type for bad user input.

Library code raises :class:`UserError` with one sentence that says what was wrong and what is
allowed. The command line catches it, prints the sentence and exits with code 2, so a user never
sees a traceback for their own mistake.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message is one sentence that is shown as is."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
