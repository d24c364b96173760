"""The project's kinds of failure and their exit statuses (the base of every other module: it imports nothing of
the project). :func:`utils.cli.run_cli` turns each into one line on stderr and its status."""

from __future__ import annotations

import errno

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_IO = 4
EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: try again later (a run folder in use by another process)
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
#: The environment variable that makes every failure show its full traceback (for a report).
TRACEBACK_VARIABLE = "DSQN_TRACEBACK"
#: Storage failures (exit 4): the system could not write or read what the program needed to.
IO_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})
#: Operating-system refusals about a path the user gave or a folder the user controls (exit 2).
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT,
                         errno.EEXIST, errno.ELOOP, errno.ENOTEMPTY, errno.ETXTBSY, errno.EBUSY, errno.ESTALE})
USER_OS_ERRORS = tuple(IO_ERRNOS | PATH_ERRNOS)


class UserError(Exception):
    """A mistake in what the user asked for; its message says what is wrong and what to do."""


class Busy(UserError):
    """What the user asked for is in use by another process (a live run's folder); it can be tried again later."""


class Diverged(Exception):
    """Training produced a non-finite loss or Q-value; the message names the step and what was kept."""


class Stopped(Exception):
    """The run was stopped by a signal after saving its state; ``exit_status`` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


def os_error_of(error: BaseException) -> OSError | None:
    """The operating-system failure behind ``error``: itself, or for an error raised by a C++ library that lost it
    (torch.save on a full disk raises RuntimeError "unexpected pos" with the OSError as its context), that one."""
    seen = 0
    while error is not None and seen < 4:
        if isinstance(error, OSError) and error.errno in USER_OS_ERRORS:
            return error
        if not isinstance(error, (OSError, RuntimeError)):
            return None
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None
