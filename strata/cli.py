"""A ``typer.Typer`` whose every command ends our errors in one line (``strata.errors.one_line_errors``).

``main()`` of each CLI runs under ``strata.errors.guard``; tests drive the typer apps through ``CliRunner``, which
bypasses ``main()``, so the commands themselves end a ``UserError`` as ``prog: error: <one line>``, exit 2 (a
failure we named: exit 1). Commands only raise; no command catches its errors to print them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from strata.errors import one_line_errors


class Typer(typer.Typer):
    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)
        self.prog = prog

    # typer's own parameters, passed on as they are (listing them here would copy one typer version's signature)
    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # type: ignore[override]
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(one_line_errors(self.prog)(fn))
            return fn

        return decorator
