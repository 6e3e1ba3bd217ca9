"""Kafka client arguments: security reaches every client, secrets stay out of text."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from stream.kafka.config import common_client_config, consumer_config, producer_config
from stream.settings import load_settings

SECRET = "s3cr3t-password-value"


def test_plaintext_by_default():
    """Without security settings clients use PLAINTEXT and no SASL or SSL arguments."""
    config = common_client_config(load_settings(), "c")
    assert config["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in config and "ssl_context" not in config


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_reaches_consumer_and_producer(mechanism):
    """SASL credentials and a TLS context go to both consumer and producer."""
    settings = load_settings(security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                             sasl_username="bot", sasl_password=SECRET)
    for config in (consumer_config(settings), producer_config(settings)):
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == mechanism
        assert config["sasl_plain_username"] == "bot"
        assert config["sasl_plain_password"] == SECRET
        assert isinstance(config["ssl_context"], ssl.SSLContext)


def test_ssl_with_a_ca_file_that_holds_no_certificate_fails_clearly(tmp_path: Path):
    """A CA file that is there but holds no certificate is reported, not silently ignored (one
    that is not there at all the settings refuse: ``test_settings``)."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    settings = load_settings(security_protocol="SSL", ssl_cafile=str(garbage))
    with pytest.raises(ssl.SSLError):
        common_client_config(settings, "c")


def test_secrets_never_appear_in_settings_text():
    """repr, str and JSON dumps of the settings hide passwords."""
    settings = load_settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                             sasl_username="bot", sasl_password=SECRET, ssl_password=SECRET,
                             openai_api_key=SECRET)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in text


def test_consumer_commits_manually_from_the_earliest_offset():
    """Auto-commit is off (offsets commit after acks) and the reset is 'earliest'."""
    config = consumer_config(load_settings(fetch_max_wait_ms=7))
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
    assert config["fetch_max_wait_ms"] == 7


def test_idempotence_off_unless_asked():
    """Idempotence stays off by default (the embedded broker lacks it) and can be enabled."""
    assert producer_config(load_settings())["enable_idempotence"] is False
    assert producer_config(load_settings(enable_idempotence=True))["enable_idempotence"] is True


def test_a_start_failure_says_whether_the_brokers_were_unreachable_or_refused():
    """Unreachable (a connection error or a timeout; with another protocol than PLAINTEXT, a
    hint that the listener may speak another) or refused (any other Kafka error; with
    idempotence on, the setting that a broker without it refuses)."""
    from aiokafka.errors import KafkaConnectionError, UnknownError

    from stream.kafka.config import broker_failure

    plain = load_settings(kafka_bootstrap_servers="127.0.0.1:9")
    assert broker_failure(plain, KafkaConnectionError("no route")) == (
        "cannot reach the brokers at 127.0.0.1:9 (KAFKA_BOOTSTRAP_SERVERS): "
        "KafkaConnectionError: no route")
    tls = load_settings(kafka_bootstrap_servers="127.0.0.1:9", security_protocol="SSL")
    assert broker_failure(tls, TimeoutError()).endswith(
        ": TimeoutError (with KAFKA_SECURITY_PROTOCOL=SSL: is that the listener's protocol?)")
    assert broker_failure(plain, UnknownError()) == (
        "the brokers at 127.0.0.1:9 (KAFKA_BOOTSTRAP_SERVERS) refused the client: "
        "[Error -1] UnknownError")
    idempotent = load_settings(kafka_bootstrap_servers="127.0.0.1:9", enable_idempotence=True,
                               producer_acks="all")
    assert "set it to false for them" in broker_failure(idempotent, UnknownError())
