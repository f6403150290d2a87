"""No traceback reaches a user: bad input is one line and exit 2, a library failure one line naming the stage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.errors import UserError, first_line, guard


def _raise(exc: BaseException):
    def command():
        raise exc

    return command


@pytest.mark.parametrize(
    "exc, code, text",
    [
        (UserError("tier map m.yaml: field 'tiers' is missing; add it"), 2, "field 'tiers' is missing"),
        (KeyError("acc,none"), 1, "KeyError: 'acc,none' (unexpected"),
        (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), 1, "RuntimeError: CUDA out of memory."),
    ],
)
def test_guard_prints_one_line_and_exits(capsys, exc, code, text):
    with pytest.raises(SystemExit) as out:
        guard("calibrate", _raise(exc))
    err = capsys.readouterr().err
    assert out.value.code == code and text in err and len(err.strip().splitlines()) == 1
    assert err.startswith("calibrate: error: ")


def test_a_bare_assertion_names_the_line_that_failed(tmp_path, monkeypatch):
    (tmp_path / "probe_lib.py").write_text("def encode():\n    context = []\n    assert len(context) > 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # a module of its own: pytest rewrites the asserts of test files
    import probe_lib

    with pytest.raises(AssertionError) as exc:
        probe_lib.encode()
    assert first_line(exc.value) == "AssertionError at probe_lib.py:3: assert len(context) > 0"


def test_a_remote_traceback_gives_its_last_line():
    text = "Job failed with trace:\nTraceback (most recent call last):\n  File 'x'\nValueError: bad width"
    assert first_line(RuntimeError(text)) == "ValueError: bad width"


def test_the_advisor_with_a_directory_as_profile_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "advisor.cli", "recommend", "--model", "qwen3-8b", "--min-kr", "0.6"]
    out = subprocess.run([*cmd, "--profile", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "is a directory" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_every_command_of_a_strata_typer_app_ends_our_errors_in_one_line():
    import typer
    from typer.testing import CliRunner

    from strata.cli import Typer
    from strata.errors import StrataError

    app = Typer("probe")

    @app.command()
    def bad(kind: str) -> None:
        raise {"user": UserError("--x 3 is not allowed; use 1 or 2"), "ours": StrataError("unit u failed")}.get(
            kind, KeyError(kind)
        )

    @app.command()
    def other() -> None:  # two commands: a group, as the project's CLIs are
        typer.echo("ok")

    user, ours, other_error = (CliRunner().invoke(app, ["bad", kind]) for kind in ("user", "ours", "else"))
    assert user.exit_code == 2 and user.stderr == "probe: error: --x 3 is not allowed; use 1 or 2\n"
    assert ours.exit_code == 1 and ours.stderr == "probe: error: unit u failed\n"
    assert isinstance(other_error.exception, KeyError)  # not ours: left to main()'s guard (or the test) to report
    assert bad.__name__ == "bad" and CliRunner().invoke(app, ["other"]).output == "ok\n"
