"""Command-line plumbing shared by run.py, convert.py and the other programs.

* Every option is defined once, as a dataclass field made by :func:`option` (default, help text, value parser,
  choices); :func:`add_options` turns the fields into argparse options and :func:`given_options` reads back only
  the options the user actually typed (so a resumed run can tell an override from a default). An option may
  belong to an :class:`OptionGroup` (what it is for): its section of ``--help`` and the methods it applies to, from
  which :func:`refuse_misplaced` derives the options a method refuses.
* Every program's entry point is :func:`run_cli`: whatever is not a bug in the project (a user mistake, a damaged
  input, a full disk, Ctrl-C) ends with one line on stderr and an exit status of its own; a bug keeps its
  traceback. ``DSQN_TRACEBACK=1`` shows the full trace of every failure, for a report.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields

from utils.errors import (  # noqa: F401 - defined there, used and re-exported here
    EXIT_BUSY,
    EXIT_DIVERGED,
    EXIT_IO,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    IO_ERRNOS,
    PATH_ERRNOS,
    TRACEBACK_VARIABLE,
    USER_OS_ERRORS,
    Busy,
    Diverged,
    Stopped,
    UserError,
    os_error_of,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but an error is a single line (no usage block) so it reads like every other error here."""

    def error(self, message: str):  # noqa: D401 - argparse's name
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# -- value parsers -----------------------------------------------------------------------------------------------------


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


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text}")
    return value


def shell_words(text: str) -> str:
    """A value parser for an option that holds other programs' options as one string: it must split as a shell
    would (closed quotes); the text is kept as given."""
    import shlex

    try:
        shlex.split(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"cannot be split into words as a shell would ({error}): {text}") from None
    return text


# -- options as dataclass fields ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionGroup:
    """Options that serve one purpose: one section of ``--help``, and the values of the program's ``--method`` they
    apply to (``methods``; empty: every method). Given with another method, an option of the group is refused with
    ``why`` (:func:`refuse_misplaced`), or accepted and left unused when ``why`` is None. Calling the group declares
    one of its options: ``learn(32, "transitions per update")`` is :func:`option` with ``group=learn``."""

    title: str
    description: str
    methods: tuple[str, ...] = ()
    why: str | None = None

    def __call__(self, default, help: str, **kwargs) -> Field:
        return option(default, help, group=self, **kwargs)


def option(default, help: str, *, parse: Callable | None = None, choices=None, metavar: str | None = None,
           nargs: str | None = None, group: OptionGroup | None = None, resumable: bool = False) -> Field:
    """A dataclass field that is also a command-line option ``--<name>``. ``parse`` turns the typed text into a
    value (default: the type of ``default``); a bool field is an on/off flag (``--x`` / ``--no-x``); ``nargs``
    ("+" or "*") makes it a list option (``--x 1 2 3``, each value parsed by ``parse``); ``group``: the
    :class:`OptionGroup` it belongs to; ``resumable``: a run continued with ``--resume`` may change it."""
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices, "metavar": metavar,
                                            "nargs": nargs, "group": group, "resumable": resumable})


def option_groups(cls) -> dict[OptionGroup, list[str]]:
    """The :class:`OptionGroup` s of the dataclass ``cls``, in the order of their first option, each with the names
    of its options."""
    groups: dict[OptionGroup, list[str]] = {}
    for f in fields(cls):
        if f.metadata.get("group") is not None:
            groups.setdefault(f.metadata["group"], []).append(f.name)
    return groups


def refuse_misplaced(cls, method: str, given: Iterable[str]) -> None:
    """A :class:`UserError` for the first option in ``given`` whose :class:`OptionGroup` does not apply to
    ``method`` and refuses other methods; the options of a group without ``why`` are accepted (and unused)."""
    for group, names in option_groups(cls).items():
        if not group.methods or method in group.methods or group.why is None:
            continue
        for name in names:
            if name in given:
                raise UserError(f"--{name} is for " + " or ".join(f"--method {m}" for m in group.methods)
                                + f": {group.why}")


def add_options(parser: argparse.ArgumentParser, cls, only: Callable[[str], bool] = lambda name: True) -> None:
    """Add an option for every :func:`option` field of the dataclass ``cls`` (in field order), each in the
    argument group of its :class:`OptionGroup` (a section of ``--help``) when it has one."""
    sections: dict[OptionGroup, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        if "help" not in f.metadata or not only(f.name):
            continue
        meta, default = f.metadata, f.default if f.default is not MISSING else None
        group = meta.get("group")
        if group is not None and group not in sections:
            sections[group] = parser.add_argument_group(group.title, group.description)
        target = sections[group] if group is not None else parser
        shown = "" if default is None else f" (default {default})"
        if isinstance(default, bool):
            target.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, help=meta["help"] + shown)
            continue
        parse = meta["parse"] or (type(default) if default is not None else str)
        target.add_argument(f"--{f.name}", type=parse, choices=meta["choices"], metavar=meta["metavar"],
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
    class Quiet(argparse.ArgumentParser):
        def error(self, message):  # noqa: D401 - argparse's name; the program's own parser reports it
            raise ValueError(message)

    pre = Quiet(add_help=False)
    pre.add_argument("--gpu", default=None)
    try:
        known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    except ValueError:
        return
    if known.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = known.gpu


def require_extra(module: str, name: str, extra: str, what: str) -> None:
    """Import ``module`` (a package of the optional dependency group ``extra`` in pyproject.toml); if it cannot be
    imported, a :class:`UserError` saying that ``what`` needs ``name`` and how to install it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as error:
        broken = "" if error.name == module and "No module named" in str(error) else f" ({error})"
        raise UserError(f"{what} needs {name}{broken}: pip install -e \".[{extra}]\"") from None


# -- paths -------------------------------------------------------------------------------------------------------------

#: Room kept below the file system's limits for what a program adds to a path it is given: a run folder's "_9999"
#: suffix (names) and its deepest file, state/replay-undo-000001.bin.tmp (paths).
NAME_RESERVE, PATH_RESERVE = 5, 64


def _limits(path: str) -> tuple[int, int]:
    """(longest name, longest path) in bytes that the file system holding ``path`` (or its nearest existing
    ancestor) allows."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        return os.pathconf(probe or os.sep, "PC_NAME_MAX"), os.pathconf(probe or os.sep, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_path(path: str, option_name: str, reserve: int = PATH_RESERVE) -> str:
    """The absolute path of ``path``; a one-line error naming ``option_name`` if one of its names, or the whole path
    with ``reserve`` bytes to spare, is longer than the file system allows."""
    path = os.path.abspath(os.path.expanduser(path))
    name_max, path_max = _limits(path)
    for name in path.split(os.sep):
        if len(os.fsencode(name)) > name_max:
            raise UserError(f"{option_name}: the name {name[:24]}...{name[-8:]} is {len(os.fsencode(name))} bytes "
                            f"long; the file system allows {name_max}: choose a shorter name")
    if len(os.fsencode(path)) + reserve > path_max:
        raise UserError(f"{option_name}: the path {path[:40]}... is {len(os.fsencode(path))} bytes long; the file "
                        f"system allows {path_max} (with {reserve} to spare for the files written inside): choose a "
                        "shorter one")
    return path


def check_output_dir(path: str, option_name: str = "--output_dir") -> str:
    """The absolute path of an output folder; a one-line error if it names an existing file or is too long."""
    path = check_path(path, option_name, reserve=PATH_RESERVE + 2 * NAME_RESERVE + 64)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option_name} {path} is a file, not a folder; give a folder")
    return path


def check_run_name(name: str | None, parent: str | None = None) -> None:
    """``--run_name`` must name one plain folder (no path, not hidden, not empty) that fits the file system (in
    ``parent``, with room for a ``_2`` ... suffix and the run's files)."""
    if name is None:
        return
    if os.sep in name or name.startswith(".") or not name.strip() or "\0" in name:
        raise UserError(f"--run_name {name!r} must be a plain folder name")
    name_max, _ = _limits(parent or os.getcwd())
    if len(os.fsencode(name)) + NAME_RESERVE > name_max:
        raise UserError(f"--run_name is {len(os.fsencode(name))} bytes long; the file system allows "
                        f"{name_max - NAME_RESERVE} for a run folder's name: choose a shorter name")
    if parent is not None:
        check_path(os.path.join(parent, name), "--run_name", reserve=PATH_RESERVE + NAME_RESERVE)


# -- saved options -----------------------------------------------------------------------------------------------------


def check_saved_options(cls, values, where: str) -> None:
    """Check a saved configuration (a run's config.json) against the :func:`option` fields of ``cls``: a mapping,
    each known option of the type and in the range its command-line option accepts; a one-line error naming
    ``where`` and the option otherwise. Keys that are not options (the git commit, the command) are not checked."""
    if not isinstance(values, dict):
        raise UserError(f"{where} holds a {type(values).__name__}, not the mapping of options run.py writes; it was "
                        "damaged or edited by hand")
    for f in fields(cls):
        if f.name not in values or "help" not in f.metadata:
            continue
        value, default, meta = values[f.name], f.default, f.metadata
        problem = _saved_value_problem(value, default, meta)
        if problem:
            raise UserError(f"{where}: {f.name} is {value!r}, {problem}; it was damaged or edited by hand: put back "
                            "the value the run was started with")


def _saved_value_problem(value, default, meta) -> str | None:
    if value is None:
        return None if default is None else "not a value"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "not true or false"
    if meta.get("nargs"):
        if not isinstance(value, list):
            return "not a list"
        items = value
    else:
        items = [value]
    parse = meta.get("parse") or (type(default) if default is not None else str)
    for item in items:
        if isinstance(item, (bool, dict, list)) or (parse in (str,) and not isinstance(item, str)):
            return "not of the option's type"
        if isinstance(item, str) and parse is not str and not isinstance(default, str):
            return "text where a number belongs"
        if isinstance(item, float) and parse in (int,) or (isinstance(item, float) and not item.is_integer()
                                                            and isinstance(default, int)):
            return "not an integer"
        try:
            parsed = parse(str(item))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            return str(error) or "out of range"
        if meta.get("choices") is not None and parsed not in meta["choices"]:
            return f"not one of {', '.join(map(str, meta['choices']))}"
    return None


# -- running a program -------------------------------------------------------------------------------------------------

_recovery: str | None = None


def set_recovery(text: str | None) -> None:
    """What an I/O failure's line tells the user to do once the disk is fixed, e.g. ``continue with  python run.py
    --resume <folder>`` (default: run the command again)."""
    global _recovery
    _recovery = text


def _os_error_line(error: OSError) -> tuple[str, int]:
    name = error.filename or getattr(error, "filename2", None)
    where = f" ({name})" if name else ""
    what = error.strerror or os.strerror(error.errno)
    if error.errno in IO_ERRNOS:
        then = _recovery or "run the command again"
        return (f"{what}{where}; everything saved before is intact: free space (or fix the file system), then "
                f"{then}", EXIT_IO)
    return f"{what}{where}; fix the path or its permissions and run again", EXIT_USAGE


def _is_one_of(error: BaseException, kinds: Iterable) -> bool:
    """``kinds``: exception classes, or ``"module.Class"`` names looked up only in modules already imported (an
    error cannot come from a module that was never imported, and naming it costs no import)."""
    for kind in kinds:
        if isinstance(kind, str):
            module, _, name = kind.rpartition(".")
            kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(error, kind):
            return True
    return False


_quiet_handlers: list = []


def quiet_interrupt(prog: str) -> None:
    """Until :func:`run_cli` starts, Ctrl-C ends the program with one line and status 130: for a program whose
    module-level imports are heavy (call it before them, when run as a program)."""
    import signal

    def interrupted(signum, frame):
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        os._exit(EXIT_SIGINT)  # nothing is written yet: no clean-up to run

    _quiet_handlers.append(interrupted)
    signal.signal(signal.SIGINT, interrupted)


def run_cli(main: Callable[[], object], prog: str, user_errors: Iterable = ()) -> None:
    """Run ``main`` (the whole program: its heavy imports too) and turn what is not a bug into one line on stderr
    and an exit status:

    =====  ============================================================================================
    2      a user mistake or damaged input (:class:`UserError`, ``user_errors``), a path the system refuses
    3      a diverged run (:class:`Diverged`)
    4      a storage failure: a full disk, a quota, an I/O error, a read-only file system (with what to do)
    75     busy: a run folder in use by another process (:class:`Busy`); try again once it has ended
    130    Ctrl-C (anywhere, imports included); 130 / 143 a run stopped by a signal after saving (:class:`Stopped`)
    =====  ============================================================================================

    Anything else is a bug and keeps its traceback; with ``DSQN_TRACEBACK=1`` every failure shows its traceback."""
    import signal

    if signal.getsignal(signal.SIGINT) in _quiet_handlers:  # Ctrl-C is KeyboardInterrupt again (quiet_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    set_recovery(None)  # what a previous program run in this process said does not hold for this one
    status, message = 0, None
    try:
        main()
    except SystemExit:
        raise
    except Stopped as stopped:
        status, message = stopped.exit_status, f"{prog}: {stopped}"
    except KeyboardInterrupt:
        status, message = EXIT_SIGINT, f"{prog}: interrupted"
    except BaseException as error:  # noqa: BLE001 - sorted below; a bug is raised again
        if isinstance(error, Busy):
            text, status = str(error), EXIT_BUSY
        elif _is_one_of(error, (UserError, *user_errors)):
            text, status = str(error) or type(error).__name__, EXIT_USAGE
        elif isinstance(error, Diverged):
            text, status = str(error), EXIT_DIVERGED
        elif os_error_of(error) is not None:
            text, status = _os_error_line(os_error_of(error))
        else:
            raise
        if os.environ.get(TRACEBACK_VARIABLE):
            traceback.print_exception(error)
        message = f"{prog}: error: {' '.join(text.split())}"
        error.__traceback__ = None
        del error
    finally:
        from utils.runlock import release_all

        release_all()
    if message is not None:
        print(message, file=sys.stderr, flush=True)
        sys.exit(status)  # outside the except blocks: the failed program's frames (an emulator...) are freed now
