"""chatstream's Kafka runtime: consumer loop, scheduling, sessions, offsets, stats."""
