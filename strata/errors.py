"""Errors users see: one base class that every command ends in with one line, and the one-line rendering.

A ``UserError`` is input the command cannot use (a file, a flag, a model it cannot handle): its message is one
line naming the input and the fix, and the command exits 2. Anything else a library raises is rendered by
``first_line`` into the same one-line form, never a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

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


def guard(prog: str, command: Callable[[], Any]) -> Any:
    """Run a command's entry point so that no traceback reaches a user: our errors print their one line (exit 2
    for bad input, 1 otherwise); anything else a library raises prints its first line and exits 1."""
    try:
        return command()
    except UserError as exc:
        print(f"{prog}: error: {first_line(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except StrataError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    except Exception as exc:
        print(f"{prog}: error: {first_line(exc)} (unexpected; please report it)", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
