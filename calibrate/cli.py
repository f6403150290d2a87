"""`calibrate`: the command line of the results store, tiered evaluation and PTQ sweeps.

Heavy imports (torch, transformers, lm-eval) happen inside the commands that need them.
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
