"""Settings: defaults, validation, and one-line errors that name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream.settings import SessionScope, SettingsError, load_settings


def test_defaults_match_the_documentation(monkeypatch):
    """Group, topics, partitions and limits have the documented defaults."""
    for name in ("CHATSTREAM_GROUP_ID", "CHATSTREAM_INBOUND_TOPIC", "MAX_CONCURRENT_SESSIONS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.group_id, settings.inbound_topic, settings.response_topic,
            settings.dlq_topic) == ("chatstream", "chat.inbound", "chat.responses", "chat.dlq")
    assert settings.partitions == 8
    assert settings.max_concurrent_sessions == 1000
    assert settings.session_scope is SessionScope.USER
    assert settings.context_cache_ttl_seconds == 120
    assert settings.input_limits.max_content_chars == 4000


@pytest.mark.parametrize("variable,value,expected", [
    ("MAX_CONCURRENT_SESSIONS", "abc", "whole number"),
    ("MAX_CONCURRENT_SESSIONS", "0", "greater than or equal to 1"),
    ("CHATSTREAM_SESSION_SCOPE", "team", "'user' or 'channel'"),
    ("CHATSTREAM_PARTITIONS", "-1", "greater than or equal to 1"),
    ("ENABLE_CONCURRENT_CONVERSATION_MANAGER", "maybe", "true or false"),
])
def test_invalid_value_names_variable_value_and_expectation(monkeypatch, variable, value, expected):
    """The error is one line: variable, offending value, what is expected."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert variable in message and repr(value) in message and expected in message


def test_sasl_needs_credentials(monkeypatch):
    """A SASL protocol without mechanism and credentials is rejected up front."""
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="KAFKA_SASL_MECHANISM"):
        load_settings()


def test_idempotence_needs_acks_all(monkeypatch):
    """The producer refuses idempotence with acks 0 or 1: the settings say so up front."""
    monkeypatch.setenv("CHATSTREAM_ENABLE_IDEMPOTENCE", "true")
    monkeypatch.setenv("CHATSTREAM_PRODUCER_ACKS", "1")
    with pytest.raises(SettingsError, match="CHATSTREAM_PRODUCER_ACKS=all"):
        load_settings()


def test_two_roles_cannot_share_a_topic(monkeypatch):
    """Dead letters (or answers) written to the inbound topic would be consumed again."""
    monkeypatch.setenv("CHATSTREAM_DLQ_TOPIC", "chat.inbound")
    with pytest.raises(SettingsError, match="CHATSTREAM_INBOUND_TOPIC and CHATSTREAM_DLQ_TOPIC"):
        load_settings()


def test_secrets_are_hidden_in_repr(monkeypatch):
    """Passwords never show in the settings' repr (and so not in logs)."""
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bot")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-secret")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings)


def test_cli_exits_with_status_2_on_bad_configuration():
    """`chatstream` prints one line to stderr and exits 2 for an invalid variable."""
    result = subprocess.run(
        [sys.executable, "-c", "from stream.app.cli import main; main()", "topics", "ensure"],
        env={"MAX_CONCURRENT_SESSIONS": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MAX_CONCURRENT_SESSIONS='abc'" in lines[0]


def test_placement_environment_starts_a_process_on_the_same_topics():
    """Settings read back from placement_environment name the same broker, group and topics."""
    import os
    from unittest import mock

    from stream.settings import placement_environment

    original = load_settings(kafka_bootstrap_servers="127.0.0.1:1234", group_id="g",
                             inbound_topic="i", response_topic="r", dlq_topic="d",
                             changelog_topic="s", partitions=3)
    with mock.patch.dict(os.environ, placement_environment(original), clear=True):
        again = load_settings()
    fields = ("kafka_bootstrap_servers", "group_id", "inbound_topic", "response_topic",
              "dlq_topic", "changelog_topic", "partitions")
    assert {f: getattr(again, f) for f in fields} == {f: getattr(original, f) for f in fields}


def test_bare_field_names_in_the_environment_are_not_settings(monkeypatch):
    """Only the documented variables set anything: a LOG_LEVEL, HTTP_HOST or OPENAI_API_KEY
    meant for some other program is not read as CHATSTREAM_LOG_LEVEL and the like (WORKERS=0
    would be refused if it were read)."""
    for variable, value in {"LOG_LEVEL": "info", "HTTP_HOST": "0.0.0.0", "WORKERS": "0",
                            "OPENAI_API_KEY": "not-ours", "GROUP_ID": "other"}.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert (settings.log_level, settings.http_host, settings.group_id) == (
        "INFO", "127.0.0.1", "chatstream")
    assert settings.openai_api_key is None


def test_overrides_are_by_field_name_and_unknown_ones_are_refused():
    assert load_settings(max_in_flight=7).max_in_flight == 7
    with pytest.raises(TypeError, match="max_in_fligth"):
        load_settings(max_in_fligth=7)


def test_protocols_mechanisms_and_levels_are_read_in_any_case(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bot")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret")
    monkeypatch.setenv("CHATSTREAM_LOG_LEVEL", " info")
    settings = load_settings()
    assert (settings.security_protocol, settings.sasl_mechanism, settings.log_level) == (
        "SASL_SSL", "SCRAM-SHA-512", "INFO")


def test_sasl_without_some_credentials_names_only_those_missing(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bot")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == ("invalid configuration: KAFKA_SECURITY_PROTOCOL="
                                  "SASL_PLAINTEXT needs KAFKA_SASL_PASSWORD")


@pytest.mark.parametrize("variable", ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE",
                                      "KAFKA_SSL_KEYFILE"])
def test_a_tls_file_that_is_not_there_is_refused_naming_its_variable(monkeypatch, tmp_path,
                                                                     variable):
    """Found only when the first client builds its TLS context, it would end the member with
    a FileNotFoundError naming neither the variable nor the path. Without TLS the files are
    not read, so not checked, and an empty value is no file at all."""
    missing = tmp_path / "absent.pem"
    monkeypatch.setenv(variable, str(missing))
    assert load_settings().security_protocol == "PLAINTEXT"
    monkeypatch.setenv(variable, "")
    assert getattr(load_settings(security_protocol="SSL"), variable.lower()[6:]) is None
    monkeypatch.setenv(variable, str(missing))
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == f"invalid {variable}={str(missing)!r}: no readable file at " \
                                 "that path"
    present = tmp_path / "present.pem"
    present.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(variable, str(present))
    assert str(present) in repr(load_settings())
