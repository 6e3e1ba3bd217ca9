"""Operator commands: dead-letter inspection and replay, the configuration reference."""
