"""User-facing errors and the two ways a command stops early.

UserError: bad input; the CLI prints one line and exits 2.
StopRequested: raised by a progress callback once the user asked to stop (Ctrl-C, SIGTERM); a
backend that sees it saves a checkpoint of the current step and lets it propagate.
Interrupted: the command stopped on a signal (after a graceful stop, or at once on the second
one); the CLI exits 128 + signal number (130 for Ctrl-C, 143 for SIGTERM) without a traceback.
"""

import signal


class UserError(Exception):
    """Bad input from the user (a file, a field, an option). The message names the field and the fix."""


class StopRequested(Exception):
    """The user asked to stop: checkpoint the current step, then let this propagate."""


class Interrupted(KeyboardInterrupt):
    """A command stopped on signal `signum`; a KeyboardInterrupt so that no `except Exception` swallows it."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum = int(signum)


EXIT_USER_ERROR = 2
