"""Errors users see: one base class that every command ends in with one line, and the one-line rendering.

A ``UserError`` is input the command cannot use (a file, a flag, a model it cannot handle): its message is one
line naming the input and the fix, and the command exits 2. Anything else a library raises is rendered by
``first_line`` into the same one-line form, never a traceback.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class StrataError(Exception):
    """An error strata raised itself: its message is already the one line a user reads."""


class UserError(StrataError, ValueError):
    """Input a command cannot use; the message is one line naming the input and the fix (exit 2)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first non-empty line of the message`` (a remote task's original exception where it carries one)."""
    cause = getattr(exc, "cause", None)  # Ray wraps the worker's exception
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    name = type(exc).__name__
    if isinstance(exc, StrataError) and lines:
        return lines[0][:limit]
    if not lines:  # a bare `assert` or `raise X()`: the source line that raised says what failed
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
        where = frames[-1] if frames else None
        return f"{name} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}: {where.line}"[:limit] if where else name
    # A remote job's error carries the worker's traceback as text: its last line is the exception itself.
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        return lines[-1][:limit]
    return (lines[0] if lines[0].startswith(name) else f"{name}: {lines[0]}")[:limit]


def report(prog: str, exc: BaseException) -> int:
    """Print ``exc`` as the one line ``prog: error: ...`` on stderr; return the exit status it ends in (2 for bad
    input, 1 otherwise). The one place a command's error becomes what a user reads."""
    if isinstance(exc, UserError):
        print(f"{prog}: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, StrataError):
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{prog}: error: {first_line(exc)} (unexpected; please report it)", file=sys.stderr)
    return EXIT_FAILED


def one_line_errors(prog: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a command so that a ``StrataError`` ends it as ``report`` says (``SystemExit``), whoever calls it:
    ``main()``, a test calling the function, or click's ``CliRunner`` (which bypasses ``main()``'s ``guard``).
    Anything else propagates, to ``guard`` or to the test."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)  # (typer reads a command's parameters through __wrapped__)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except StrataError as exc:
                raise SystemExit(report(prog, exc)) from None

        return run

    return decorate


def guard(prog: str, command: Callable[[], Any]) -> Any:
    """Run a command's entry point so that no traceback reaches a user: our errors print their one line (exit 2
    for bad input, 1 otherwise); anything else a library raises prints its first line and exits 1."""
    try:
        return command()
    except Exception as exc:
        raise SystemExit(report(prog, exc)) from None


def read_input(path: Path, error: Callable[[str], Exception], what: str, fix: str) -> bytes:
    """The bytes of a file a user gave, or ``error`` with one line: missing, a folder, or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory; {fix}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror}); {fix}") from None


def field_error(exc: Any) -> tuple[str, str]:
    """(dotted field path, message) of a pydantic ValidationError's first error: what a one-line error names."""
    err = exc.errors()[0]
    return ".".join(str(p) for p in err["loc"]) or "(top level)", str(err["msg"])
