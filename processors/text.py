"""Text helpers shared by the lexical processors (memory retrieval, thread detection, reply
composition) and by admission (questions are scheduled as HIGH). Pure."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from types import MappingProxyType

# Letters and digits of any script ("café", "привет", "١٢٣"), with an apostrophe inside a word
# ("don't", and with U+2019); zero-width characters joined inside a word are dropped, not split on.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just let me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    im ive id ill youre thats dont cant wont isnt doesnt didnt get got hi hey hello thanks thank
    please ok okay yes yeah oh well really
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _normalise(word: str) -> str:
    # A crude plural fold so "refunds" meets "refund"; a real stemmer is not worth a dependency.
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# Texts up to this length are remembered, ``_CACHED_TOKENS`` of them at most, with their term
# counts: a message is tokenised again by every later event that looks at its session's
# history (thread tracking reads the thread's last messages, memory counts the query's terms
# and, at the next event, the same message's as a document). Tokens are interned, so an entry
# holds its text, a tuple of shared strings and a small dict: about 2 KB at the length limit,
# about 16 MB per process at worst, a few MB for chat-sized messages.
_CACHED_TEXT_CHARS = 256
_CACHED_TOKENS = 8192


def tokenize(text: str) -> tuple[str, ...]:
    """Lowercase content words of ``text``: stopwords and one-letter tokens dropped, plurals folded."""
    if len(text) <= _CACHED_TEXT_CHARS:
        return _remembered_tokens(text)
    return _tokens(text)


def _tokens(text: str) -> tuple[str, ...]:
    # One loop, not a chain of generators: each link would cost a call per word.
    tokens = []
    lowered = text.lower()
    if _ZERO_WIDTH.search(lowered) is not None:
        lowered = _ZERO_WIDTH.sub("", lowered)
    for word in _WORD.findall(lowered):
        if "'" in word or "\u2019" in word:
            word = word.replace("'", "").replace("\u2019", "")
        if word not in STOPWORDS:
            word = _normalise(word)
            if len(word) > 1 and word not in STOPWORDS:
                tokens.append(sys.intern(word))
    return tuple(tokens)


_remembered_tokens = functools.lru_cache(maxsize=_CACHED_TOKENS)(_tokens)


def term_counts(text: str) -> Mapping[str, int]:
    """Term frequencies of the content words of ``text``, in the order the terms first occur
    (a Counter's order). Read-only: a short text's counts are remembered and shared."""
    if len(text) <= _CACHED_TEXT_CHARS:
        return _remembered_counts(text)
    return _counts(_tokens(text))


def _counts(tokens: tuple[str, ...]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for token in tokens:  # a Counter would also check whether ``tokens`` is a Mapping
        counts[token] = counts.get(token, 0) + 1
    return MappingProxyType(counts)


@functools.lru_cache(maxsize=_CACHED_TOKENS)
def _remembered_counts(text: str) -> Mapping[str, int]:
    return _counts(_remembered_tokens(text))


def jaccard(left: set[str], right: set[str]) -> float:
    """Size of the intersection over size of the union; 0.0 when both are empty."""
    union = left | right
    return len(left & right) / len(union) if union else 0.0


_QUESTION_START = re.compile(
    r"^\W*(?:"
    r"why\b"
    r"|(?:what|who|where|when|which|how|whose|whom)"
    r"(?:'s|'re|\s+(?:is|are|was|were|am|do|does|did|can|could|would|will|should|has|have|"
    r"had|about|come|many|much|long|often|else)\b)"
    r"|(?:can|could|would|will|should|shall|may|might|is|are|was|were|have|has|does|did|am)"
    r"(?:n'?t)?\s+(?:you|i|we|he|she|they|it|this|that|there|anyone|anybody|someone|somebody)\b"
    r"|(?:do|don'?t)\s+(?:you|i|we|they|anyone|anybody|someone|somebody)\b"
    r")",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """True when ``text`` reads as a question addressed to someone: it ends with a question mark
    (of any script in ``_QUESTION_MARKS``), starts
    with "why", with a wh-word followed by a verb ("how do", "what's", "where is"), or with an
    auxiliary followed by a subject ("can you", "is it", "does anyone")."""
    stripped = text.rstrip()
    return stripped.endswith(_QUESTION_MARKS) or _QUESTION_START.search(stripped) is not None


# Latin, full-width (Chinese, Japanese), Arabic/Persian/Urdu, small form, Armenian, Ethiopic.
_QUESTION_MARKS = ("?", "\uff1f", "\u061f", "\ufe56", "\u055e", "\u1367")
