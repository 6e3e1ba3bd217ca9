"""The consumer-group member: the consume loop (``member``) and the parts it delegates to:
commit ledger, hand-overs, readiness, backpressure, the publishing sink, dead letters, client
configuration and topics."""
