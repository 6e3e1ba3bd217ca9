"""The crisis prefilter never rejects a text the crisis patterns would match."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.priority import _CRISIS, may_be_crisis

# Words and phrases near every crisis pattern, plus ordinary chat words, in any case, with
# the characters that IGNORECASE folds onto ASCII letters mixed in.
_PIECES = [
    "kill", "killing", "myself", "my self", "self-harm", "selfharm", "suicide", "suicidal",
    "end it all", "ending my life", "take my own life", "want to die", "wanna die",
    "don't want to live", "no reason to live", "emergency", "not an emergency", "help me now",
    "call 911", "call an ambulance", "i'm going to shoot you", "i will hurt him", "bomb the",
    "shoot up the school", "has a gun", "heart attack", "can't breathe", "not breathing",
    "overdosed", "unconscious", "seizure", "chest pain", "anaphylactic", "bleeding heavily",
    "hello", "order", "parcel", "thanks", "please", "the", "a", "my", "you", "now",
    "\u0131", "\u017f", "\u0130", "\u212a", "!", "?", " ", "\n",
]


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(_PIECES), max_size=8).map(" ".join),
       st.lists(st.booleans(), max_size=80))
def test_the_prefilter_keeps_every_text_the_patterns_match(text, upper):
    """If the full pattern matches (in any letter case), the prefilter let the text through."""
    flips = upper + [False] * len(text)
    cased = "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=False))
    if _CRISIS.search(cased) is not None:
        assert may_be_crisis(cased)


def test_plain_messages_skip_the_full_pattern():
    """Ordinary support messages are rejected by the prefilter itself."""
    assert not may_be_crisis("hello number 42, how is my order doing?")
    assert not may_be_crisis("this is the third time it failed, I am really frustrated")
