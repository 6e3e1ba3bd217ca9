"""The engine: admission and priority, per-session lanes, sessions, and the concurrent and
sequential engines. No Kafka and no I/O: events come in through ``submit`` and leave through a
``Sink``."""
