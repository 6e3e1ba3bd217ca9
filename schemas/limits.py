"""Input limits enforced while decoding, before any processing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on one inbound record. Defaults match the CHATSTREAM_* settings' defaults."""

    max_content_chars: int = 4000
    max_metadata_bytes: int = 8192
    max_metadata_depth: int = 5
    max_record_bytes: int = 65536

    def __post_init__(self) -> None:
        for name in ("max_content_chars", "max_metadata_bytes", "max_metadata_depth",
                     "max_record_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer")
