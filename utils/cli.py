"""Command-line plumbing shared by run.py, convert.py and the other programs: user mistakes end with one line
on stderr and exit status 2, never with a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake in what the user asked for; its message says what is wrong and what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error is a single line (no usage block) so it reads like every other error here."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def run_cli(main: Callable[[], None], prog: str, user_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run ``main``; turn the listed exception types (and :class:`UserError`) into a one-line error, exit 2.
    Ctrl-C stops with exit status 130 and a one-line note."""
    try:
        main()
    except (UserError, *user_errors) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
