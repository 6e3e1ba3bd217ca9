"""Text helpers shared by the lexical processors (memory retrieval, thread detection). Pure."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

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


def tokenize(text: str) -> list[str]:
    """Lowercase content words of ``text``: stopwords and one-letter tokens dropped, plurals folded."""
    raw = (w.replace("'", "") for w in _WORD.findall(text.lower()))
    words = (_normalise(w) for w in raw if w not in STOPWORDS)
    return [w for w in words if len(w) > 1 and w not in STOPWORDS]


def term_counts(text: str) -> Counter[str]:
    """Term frequencies of the content words of ``text``."""
    return Counter(tokenize(text))


def jaccard(left: set[str], right: set[str]) -> float:
    """Size of the intersection over size of the union; 0.0 when both are empty."""
    union = left | right
    return len(left & right) / len(union) if union else 0.0
