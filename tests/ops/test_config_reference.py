"""The configuration reference: generated from the settings model, embedded in the README,
and checked against it."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stream.settings
from stream.app.cli import app
from stream.ops.config_reference import (
    END,
    START,
    ReferenceMismatch,
    check_file,
    render,
    rows,
    write_file,
)
from stream.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_embeds_the_reference_of_the_settings_model():
    """README's generated table equals the model's; regenerate with --write README.md."""
    check_file(README)


def test_every_setting_has_a_row_with_a_meaning():
    """One row per field, in order, each naming its variable and saying what it does."""
    table = rows()
    assert len(table) == len(Settings.model_fields)
    for (variables, _, _, meaning), (name, field) in zip(table, Settings.model_fields.items(),
                                                         strict=True):
        assert meaning, f"{name} has no description="
        assert f"`{field.validation_alias.choices[0]}`" in variables  # type: ignore[union-attr]


def test_rows_show_defaults_values_and_keep_secrets_unset():
    """Defaults, bounds and choices render; CPU-derived defaults as formulas; secrets unset."""
    by_variable = {row[0]: row for row in rows()}
    assert by_variable["`CHATSTREAM_PARTITIONS`"][1:3] == ("`8`", "1 ≤ integer ≤ 10000")
    assert by_variable["`CHATSTREAM_SESSION_SCOPE`"][1:3] == ("`user`", "`user` \\| `channel`")
    assert by_variable["`MAX_WORKER_PROCESSES`"][1] == "min(cpu, 8)"
    assert by_variable["`KAFKA_SASL_PASSWORD`"][1:3] == ("unset", "secret text, or unset")


def test_check_names_a_stale_or_missing_copy_and_write_fixes_it(tmp_path):
    """A stale copy fails with a diff, a file without markers fails, --write repairs."""
    stale = tmp_path / "doc.md"
    stale.write_text(f"intro\n{START}\n| old | table |\n{END}\noutro\n")
    with pytest.raises(ReferenceMismatch, match="out of date"):
        check_file(stale)
    assert write_file(stale) and not write_file(stale)
    check_file(stale)
    assert stale.read_text().startswith("intro\n") and stale.read_text().endswith("outro\n")
    bare = tmp_path / "bare.md"
    bare.write_text("no markers here\n")
    with pytest.raises(ReferenceMismatch, match="no <!-- config-reference:start -->"):
        check_file(bare)


def test_the_command_prints_and_checks(tmp_path):
    """`chatstream config reference` prints the table; --check exits 1 on a stale file."""
    runner = CliRunner()
    printed = runner.invoke(app, ["config", "reference"])
    assert printed.exit_code == 0 and printed.output.strip() == render()
    assert runner.invoke(app, ["config", "reference", "--check", str(README)]).exit_code == 0
    stale = tmp_path / "doc.md"
    stale.write_text(f"{START}\n{END}\n")
    failed = runner.invoke(app, ["config", "reference", "--check", str(stale)])
    assert failed.exit_code == 1 and "out of date" in failed.output
    for option in ("--check", "--write"):
        missing = runner.invoke(app, ["config", "reference", option, str(tmp_path / "no.md")])
        assert missing.exit_code == 1
        assert missing.output == (f"chatstream config reference: {tmp_path / 'no.md'}: "
                                  "No such file or directory\n")


def test_the_reference_is_the_same_on_a_machine_with_other_cpus(monkeypatch):
    """A default computed from the CPU count is shown as its formula, never as this host's
    value: the model loaded on a 97-core machine renders the same table."""
    monkeypatch.setattr(os, "cpu_count", lambda: 97)
    spec = importlib.util.spec_from_file_location("settings_on_97_cores",
                                                  stream.settings.__file__)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # pydantic resolves annotations there
    spec.loader.exec_module(probe)
    assert render(probe.Settings) == render()
