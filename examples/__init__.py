"""Worked examples: a minimal bot and an LLM reply processor plugin."""
