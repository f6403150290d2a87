"""The advisor CLI run in-process, as the advisor tests drive it: (exit code, stdout, stderr)."""

from __future__ import annotations

from typing import Any

from advisor.cli import run


def cli(capsys: Any, *argv: str) -> tuple[Any, str, str]:
    try:
        code = run(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err
