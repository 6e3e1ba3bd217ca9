"""The admission prefilters never reject a text their full patterns would match."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.engine.priority import _CRISIS, _URGENT, may_be_crisis, may_be_urgent

# Words and phrases near every crisis and urgency pattern, plus ordinary chat words.
_PIECES = [
    "kill", "killing", "myself", "my self", "self-harm", "selfharm", "suicide", "suicidal",
    "end it all", "ending my life", "take my own life", "want to die", "wanna die",
    "don't want to live", "no reason to live", "emergency", "not an emergency", "help me now",
    "call 911", "call an ambulance", "i'm going to shoot you", "i will hurt him", "bomb the",
    "shoot up the school", "has a gun", "heart attack", "can't breathe", "not breathing",
    "overdosed", "unconscious", "seizure", "chest pain", "anaphylactic", "bleeding heavily",
    "urgent", "urgently", "asap", "immediately", "right now", "right  now", "!!!", "!!!!",
    "hello", "order", "parcel", "thanks", "please", "the", "a", "my", "you", "now",
    "!", "?", " ", "\n",
]
# Characters IGNORECASE matches to an ASCII letter, each standing in for that letter.
_LOOK_ALIKES = {"i": ("\u0131", "\u0130"), "s": ("\u017f",), "k": ("\u212a",)}


@st.composite
def _texts(draw: st.DrawFn) -> str:
    """Pieces in any letter case, some letters replaced by their look-alikes, inside words."""
    text = " ".join(draw(st.lists(st.sampled_from(_PIECES), max_size=8)))
    out = []
    for char in text:
        choice = draw(st.integers(0, 3))
        if choice == 1:
            char = char.upper()
        elif choice == 2 and char in _LOOK_ALIKES:
            char = draw(st.sampled_from(_LOOK_ALIKES[char]))
        out.append(char)
    return "".join(out)


@settings(max_examples=2000)
@given(_texts())
def test_the_crisis_prefilter_keeps_every_text_the_patterns_match(text):
    if _CRISIS.search(text) is not None:
        assert may_be_crisis(text)


@settings(max_examples=2000)
@given(_texts())
def test_the_urgency_prefilter_keeps_every_text_the_pattern_matches(text):
    if _URGENT.search(text) is not None:
        assert may_be_urgent(text)


def test_a_look_alike_letter_inside_a_word_still_passes():
    """re.IGNORECASE matches "\u0130" to "i"; its lower-case form is two characters."""
    for text, prefilter in (("su\u0130cide", may_be_crisis), ("r\u0130ght now", may_be_urgent),
                            ("a\u017fap", may_be_urgent)):
        assert re.search(r"suicid|right|asap", text, re.IGNORECASE)
        assert prefilter(text), text


def test_plain_messages_skip_the_full_patterns():
    """Ordinary support messages are rejected by the prefilters themselves."""
    for text in ("hello number 42, how is my order doing?",
                 "this is the third time it failed, I am really frustrated"):
        assert not may_be_crisis(text)
        assert not may_be_urgent(text)
