"""Command-line plumbing shared by run.py, convert.py and the other programs.

* Every option is defined once, as a dataclass field made by :func:`option` (default, help text, value parser,
  choices); :func:`add_options` turns the fields into argparse options and :func:`given_options` reads back only
  the options the user actually typed (so a resumed run can tell an override from a default).
* User mistakes end with one line on stderr and exit status 2, never with a traceback (:func:`run_cli`).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, Field, field, fields

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
#: Operating-system failures that are the user's to fix (a full disk, a read-only or forbidden folder).
USER_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR)


class UserError(Exception):
    """A mistake in what the user asked for; its message says what is wrong and what to do."""


class Diverged(Exception):
    """Training produced a non-finite loss or Q-value; the message names the step and what was kept."""


class Stopped(Exception):
    """The run was stopped by a signal after saving its state; ``exit_status`` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error is a single line (no usage block) so it reads like every other error here."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# -- value parsers ----------------------------------------------------------------------------------------------------


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text}") from None


def checked(kind: type, accept: Callable, requirement: str) -> Callable[[str], int | float]:
    """A value parser: ``kind(text)`` if ``accept`` takes it, else an argparse error: ``must be <requirement>``."""

    def parse(text: str):
        value = _number(text, kind)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


positive_int = checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, "zero or a positive integer")
seed_int = checked(int, lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1")
finite_float = checked(float, math.isfinite, "a finite number")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive (finite) number")
probability = checked(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
greater_than_one = checked(float, lambda v: math.isfinite(v) and v > 1.0, "a (finite) number greater than 1")


# -- options as dataclass fields --------------------------------------------------------------------------------------


def option(default, help: str, *, parse: Callable | None = None, choices=None, metavar: str | None = None,
           nargs: str | None = None) -> Field:
    """A dataclass field that is also a command-line option ``--<name>``. ``parse`` turns the typed text into a
    value (default: the type of ``default``); a bool field is an on/off flag (``--x`` / ``--no-x``); ``nargs``
    ("+" or "*") makes it a list option (``--x 1 2 3``, each value parsed by ``parse``)."""
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices, "metavar": metavar,
                                            "nargs": nargs})


def add_options(parser: argparse.ArgumentParser, cls, only: Callable[[str], bool] = lambda name: True) -> None:
    """Add an option for every :func:`option` field of the dataclass ``cls`` (in field order)."""
    for f in fields(cls):
        if "help" not in f.metadata or not only(f.name):
            continue
        meta, default = f.metadata, f.default if f.default is not MISSING else None
        shown = "" if default is None else f" (default {default})"
        if isinstance(default, bool):
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, help=meta["help"] + shown)
            continue
        parse = meta["parse"] or (type(default) if default is not None else str)
        parser.add_argument(f"--{f.name}", type=parse, choices=meta["choices"], metavar=meta["metavar"],
                            nargs=meta.get("nargs"), help=meta["help"] + shown)


def options_parser(prog: str, doc: str, cls) -> ArgumentParser:
    """The parser of a program whose options are the :func:`option` fields of ``cls``; an option not typed is
    absent from the parsed namespace (see :func:`given_options`)."""
    parser = ArgumentParser(prog=prog, description=doc.split("\n\n")[0], argument_default=argparse.SUPPRESS)
    add_options(parser, cls)
    return parser


def given_options(namespace: argparse.Namespace) -> dict:
    """The options present in ``namespace``: with ``argument_default=argparse.SUPPRESS`` exactly those typed."""
    return dict(vars(namespace))


def apply_gpu_option(argv: list[str] | None) -> None:
    """Set CUDA_VISIBLE_DEVICES from ``--gpu`` before CUDA is initialised; without ``--gpu`` leave it alone (a
    scheduler such as SLURM or Ray may have set it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--gpu", default=None)
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = known.gpu


# -- output folders and running a program -----------------------------------------------------------------------------


def check_output_dir(path: str, option_name: str = "--output_dir") -> str:
    """The absolute path of an output folder; a one-line error if it names an existing file."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option_name} {path} is a file, not a folder; give a folder")
    return path


def check_run_name(name: str | None) -> None:
    """``--run_name`` must name one plain folder (no path, not hidden, not empty)."""
    if name is not None and (os.sep in name or name.startswith(".") or not name.strip()):
        raise UserError(f"--run_name {name!r} must be a plain folder name")


def _os_error_line(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{os.strerror(error.errno)}{where}; nothing already written was lost, free space or fix the folder's " \
           "permissions and run again"


def run_cli(main: Callable[[], None], prog: str, user_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run ``main`` and turn what a user can act on into one line on stderr and an exit status:

    a user mistake (:class:`UserError` and ``user_errors``) and an operating-system failure such as a full disk
    exit 2; a diverged run (:class:`Diverged`) 3; a run stopped by a signal after saving (:class:`Stopped`) 130 or
    143; Ctrl-C anywhere else 130."""
    try:
        main()
    except (UserError, *user_errors) as error:
        _fail(prog, str(error) or type(error).__name__, EXIT_USAGE)
    except Diverged as error:
        _fail(prog, str(error), EXIT_DIVERGED)
    except Stopped as stopped:
        print(f"{prog}: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_status)
    except OSError as error:
        if error.errno not in USER_OS_ERRORS:
            raise
        _fail(prog, _os_error_line(error), EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(EXIT_SIGINT)


def _fail(prog: str, message: str, status: int) -> None:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(status)
