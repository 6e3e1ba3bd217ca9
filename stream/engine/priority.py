"""Admission classification: the priority an inbound event is scheduled with.

``classify`` applies these rules in order; the first that matches decides:

1. Explicit: ``event.priority`` set by the producer wins.
2. Crisis language -> CRITICAL: self-harm or suicide, "emergency" (not "not an emergency"),
   "help me now", threats of violence against someone ("I'm going to kill you"), medical
   emergencies ("heart attack", "can't breathe", "overdose", "unconscious", ...).
3. Urgency with a strongly negative tone -> CRITICAL: an urgency marker ("urgent", "asap",
   "immediately", "right now", "!!!") together with a strongly negative word ("furious",
   "unacceptable", ...) or shouting (mostly capital letters).
4. SYSTEM messages -> LOW (placed before the question rule: a platform notice that happens to
   end in "?" is still not a person waiting for an answer).
5. Mentions and DMs -> HIGH: the bot was addressed directly.
6. Direct questions -> HIGH (``processors.text.is_question``, the same test the reply
   composer uses): ends with "?", starts with "why", starts with a wh-word followed by a verb
   ("how do", "what's", "where is"), or with an auxiliary followed by a subject ("can you",
   "is it", "does anyone").
7. Anything else -> NORMAL.

Limitations, accepted because a misclassification only reorders work and never drops it:
word lists miss paraphrases and other languages; figurative speech can still trigger rule 2
("I almost had a heart attack at the price"), though the common idioms are guarded ("I'd kill
for a coffee", "this is killing me", "shoot you an email" do not match); questions without a
"?" that start with a bare noun ("what time is it") are not recognised, and exclamations such
as "how nice is that" are.

Patterns are compiled once at import; ``classify`` is a handful of regex searches.
"""

from __future__ import annotations

import re

from processors.text import is_question
from schemas.events import ChatEvent, MessageType, Priority

__all__ = ["classify", "is_crisis", "is_urgent_and_negative"]

_FLAGS = re.IGNORECASE

_SELF = r"(?:my\s*self|myself)"
_CRISIS_PATTERNS = (
    # self-harm and suicide
    rf"\b(?:kill|hurt|harm|cut|end)(?:ing)?\s+{_SELF}\b",
    r"\bself[-\s]?harm",
    r"\bsuicid(?:e|al)\b",
    r"\bend(?:ing)?\s+(?:it\s+all|my\s+(?:own\s+)?life)\b",
    r"\btake\s+my\s+(?:own\s+)?life\b",
    r"\b(?:want|wanna|going)\s+(?:to\s+)?die\b",
    r"\bdon'?t\s+want\s+to\s+(?:live|be\s+alive|wake\s+up)\b",
    r"\bno\s+(?:reason|point)\s+(?:to|in)\s+living\b|\bno\s+reason\s+to\s+live\b",
    # explicit emergencies
    r"(?<!not\san\s)(?<!no\s)(?<!non-)(?<!non\s)\bemergency\b",
    r"\bhelp\s+me\s+(?:right\s+)?now\b",
    r"\bcall\s+(?:911|999|112|an\s+ambulance|the\s+police)\b",
    # threats of violence against someone (not "I'd kill for", not "shoot you an email")
    r"\b(?:i'?m|i\s+am|i\s+will|i'?ll|gonna|going\s+to)\s+(?:going\s+to\s+|gonna\s+)?"
    r"(?:kill|shoot|stab|murder|hurt|attack|strangle)\s+"
    r"(?:you|him|her|them|everyone|everybody|somebody|someone|people|my\s+\w+)\b"
    r"(?!\s+(?:an?|the|some)\s+(?:e-?mail|message|text|note|line|dm|invite|link|call)\b)",
    r"\b(?:bomb|shoot\s+up)\s+(?:the|a|this|our|my)\s+\w+",
    r"\bhas\s+a\s+(?:gun|knife)\b",
    # medical emergencies
    r"\bheart\s+attack\b",
    r"\b(?:can'?t|cannot|can\s+not|unable\s+to)\s+breathe\b",
    r"\bnot\s+breathing\b",
    r"\boverdos(?:e|ed|ing)\b",
    r"\bunconscious\b",
    r"\bseizure\b",
    r"\bchest\s+pains?\b",
    r"\banaphyla(?:xis|ctic)\b",
    r"\bbleeding\s+(?:heavily|badly|a\s+lot|everywhere)\b",
)
_CRISIS = re.compile("|".join(f"(?:{p})" for p in _CRISIS_PATTERNS), _FLAGS)

_URGENT = re.compile(r"\b(?:urgent(?:ly)?|asap|immediately|right\s+now)\b|!{3,}", _FLAGS)
_NEGATIVE = re.compile(
    r"\b(?:furious|livid|outraged|unacceptable|disgusting|terrible|horrible|awful|worst|"
    r"hate|angry|pissed|ruined|disaster|desperate|scam(?:med)?|panick?(?:ing|ed)?|"
    r"terrified|scared|broken|useless|ridiculous)\b",
    _FLAGS,
)
_SHOUT_MIN_LETTERS = 8
_SHOUT_UPPER_RATIO = 0.7

# Every crisis pattern above contains one of these, lower-case: a text holding none of them
# cannot match, and most messages hold none, so the long pattern runs for few of them. When a
# pattern changes, its trigger belongs here (a property test checks the two agree).
_CRISIS_TRIGGERS = (
    "self", "suicid", "end", "take", "die", "want", "liv", "emergency", "help", "call", "kill",
    "shoot", "stab", "murder", "hurt", "attack", "strangle", "bomb", "gun", "knife", "heart",
    "breath", "overdos", "unconscious", "seizure", "chest", "anaphyla", "bleed", "harm",
)
# Characters re.IGNORECASE matches to an ASCII letter that str.lower() does not turn into it
# ("\u0130".lower() is two characters, "i" and a combining dot).
_IGNORECASE_TO_ASCII = str.maketrans({"\u0131": "i", "\u017f": "s", "\u0130": "i"})


def _folded(text: str) -> str:
    """``text`` lower-cased, with what IGNORECASE matches to an ASCII letter turned into it
    first."""
    return text.lower() if text.isascii() else text.translate(_IGNORECASE_TO_ASCII).lower()


def may_be_crisis(text: str) -> bool:
    """False only when ``text`` cannot match the crisis patterns (a cheap prefilter)."""
    folded = _folded(text)
    # A loop, not any() over a generator: that costs a resume per word (0.7 against 1.1 us).
    for trigger in _CRISIS_TRIGGERS:  # noqa: SIM110
        if trigger in folded:
            return True
    return False


def is_crisis(text: str) -> bool:
    """True when ``text`` contains crisis language (rule 2)."""
    return may_be_crisis(text) and _CRISIS.search(text) is not None


def may_be_urgent(text: str) -> bool:
    """False only when ``text`` cannot match the urgency pattern: it holds none of the pattern's
    words (lower-case) nor "!!!". Written out, as five substring tests cost a tenth of the
    pattern's search (a property test checks the two agree)."""
    folded = _folded(text)
    return ("urgent" in folded or "asap" in folded or "immediately" in folded
            or "right" in folded or "!!!" in folded)


def _is_shouting(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < _SHOUT_MIN_LETTERS:
        return False
    upper = sum(ch.isupper() for ch in letters)
    return upper >= _SHOUT_UPPER_RATIO * len(letters)


def is_urgent_and_negative(text: str) -> bool:
    """True when ``text`` is urgent and strongly negative or shouted (rule 3)."""
    if not may_be_urgent(text) or _URGENT.search(text) is None:
        return False
    return _NEGATIVE.search(text) is not None or _is_shouting(text)


def classify(event: ChatEvent) -> Priority:
    """The scheduling priority of ``event``, by the rules of the module docstring. Pure."""
    if event.priority is not None:
        return event.priority
    text = event.content
    if is_crisis(text) or is_urgent_and_negative(text):
        return Priority.CRITICAL
    if event.message_type is MessageType.SYSTEM:
        return Priority.LOW
    if event.message_type in (MessageType.MENTION, MessageType.DM):
        return Priority.HIGH
    if is_question(text):
        return Priority.HIGH
    return Priority.NORMAL
