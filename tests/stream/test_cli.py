"""The command line's own options."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from stream.app.cli import app


def test_version_prints_the_installed_version_and_runs_nothing():
    result = CliRunner().invoke(app, ["--version", "run"])
    assert result.exit_code == 0
    assert result.output == f"chatstream {version('chatstream')}\n"
