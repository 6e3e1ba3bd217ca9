"""Static group membership: CHATSTREAM_GROUP_INSTANCE_ID reaches the consumer, and only it."""

from __future__ import annotations

from stream.kafka.config import consumer_config, producer_config
from stream.settings import load_settings


def test_instance_id_reaches_the_consumer_as_group_instance_id():
    """A set instance id becomes aiokafka's group_instance_id on the group consumer."""
    config = consumer_config(load_settings(group_instance_id="chatstream-0"))
    assert config["group_instance_id"] == "chatstream-0"
    assert config["group_id"] == "chatstream"


def test_instance_id_is_read_from_the_environment(monkeypatch):
    """CHATSTREAM_GROUP_INSTANCE_ID (e.g. the pod name) is the setting's variable."""
    monkeypatch.setenv("CHATSTREAM_GROUP_INSTANCE_ID", "chatstream-7c9f-abcde")
    assert consumer_config(load_settings())["group_instance_id"] == "chatstream-7c9f-abcde"


def test_dynamic_membership_by_default(monkeypatch):
    """Without an instance id the consumer joins as a dynamic member (no group_instance_id)."""
    monkeypatch.delenv("CHATSTREAM_GROUP_INSTANCE_ID", raising=False)
    assert "group_instance_id" not in consumer_config(load_settings())


def test_the_producer_takes_no_instance_id():
    """group_instance_id is a consumer argument; the producer would reject it."""
    assert "group_instance_id" not in producer_config(load_settings(group_instance_id="x"))
