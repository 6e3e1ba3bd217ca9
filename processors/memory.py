"""Conversation memory: earlier messages of the session most related to the current one (TF-IDF)."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from processors.base import ExecutionKind, Stage
from processors.cache import ContextCache
from processors.text import term_counts
from schemas.context import HistoryMessage, ProcessorContext

SNIPPET_CHARS = 200
_score_then_position = itemgetter(0, 1)


@dataclass(frozen=True, slots=True)
class _Doc:
    event_id: str
    content: str
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class SessionIndex:
    """Term counts of a session's history plus document frequencies; immutable once built."""

    docs: tuple[_Doc, ...]
    doc_freq: dict[str, int]
    ids: tuple[str, ...] = field(init=False, repr=False, compare=False)  # the docs' event ids
    unique: bool = field(init=False, repr=False, compare=False)  # no id shows twice

    def __post_init__(self) -> None:
        ids = tuple([doc.event_id for doc in self.docs])
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "unique", len(set(ids)) == len(ids))

    def vector(self, counts: Mapping[str, int]) -> dict[str, float]:
        idf, frequency = idf_table(len(self.docs)), self.doc_freq.get
        return {term: tf * idf[frequency(term, 0)] for term, tf in counts.items()}


@functools.lru_cache(maxsize=1024)
def idf_table(documents: int) -> tuple[float, ...]:
    """The idf of a term found in ``df`` of ``documents`` documents, at index ``df``: smoothed
    (as scikit-learn's default), never zero, never dividing by zero. Indexes stay small (a
    session's window), so each count's table is computed once and its floats are the same
    every time."""
    return tuple([math.log((1 + documents) / (1 + df)) + 1.0 for df in range(documents + 1)])


def build_index(messages: tuple[HistoryMessage, ...], previous: SessionIndex | None = None,
                ids: tuple[str, ...] | None = None) -> SessionIndex:
    """Index ``messages`` (pure; ``ids``: their event ids, when the caller has them). Documents
    already in ``previous`` are reused and its document frequencies updated by what joined and
    left, so a session's index costs only the changed messages as its window slides. When the
    window slid by its newest message (the usual case) the documents that stayed are taken by
    position; otherwise by id, and when an id shows more than once (an event answered again
    after a restore shows twice in its history) the index is built anew instead."""
    if previous is not None and messages:
        slid = _slid_by_one(previous, messages, ids)
        if slid is not None:
            return slid
    if previous is not None and not previous.unique:
        previous = None  # which copy of a repeated id left or stayed is not known: built anew
    known = dict(zip(previous.ids, previous.docs, strict=True)) if previous is not None else {}
    docs = tuple([
        known.get(m.event_id) or _Doc(m.event_id, m.content, term_counts(m.content))
        for m in messages
    ])
    if previous is None:
        doc_freq: Counter[str] = Counter()
        for doc in docs:
            doc_freq.update(doc.counts.keys())
        return SessionIndex(docs, dict(doc_freq))
    kept = {doc.event_id for doc in docs}
    if len(kept) < len(docs):  # an id shows twice in the window (rare): built anew, as above
        return build_index(messages)
    frequencies = dict(previous.doc_freq)
    for doc in previous.docs:
        if doc.event_id not in kept:
            _shift(frequencies, doc.counts, -1)
    for doc in docs:
        if doc.event_id not in known:
            _shift(frequencies, doc.counts, 1)
    return SessionIndex(docs, frequencies)


def _slid_by_one(previous: SessionIndex, messages: tuple[HistoryMessage, ...],
                 ids: tuple[str, ...] | None) -> SessionIndex | None:
    """``previous`` with the newest of ``messages`` joined and the oldest documents it no
    longer holds left, when ``messages`` are ``previous``'s after a slide by one message;
    None otherwise, or when an id shows twice in ``previous`` or in ``messages`` (which copy
    is which message is then not known: ``build_index`` goes by id, and builds anew)."""
    if not previous.unique:
        return None
    if ids is None:
        ids = tuple([m.event_id for m in messages])
    leaving = len(previous.ids) + 1 - len(ids)
    if leaving < 0 or ids[:-1] != previous.ids[leaving:] or ids[-1] in ids[:-1]:
        return None  # not a slide by one, or the newest id repeats one that stayed
    newest = messages[-1]
    joined = _Doc(newest.event_id, newest.content, term_counts(newest.content))
    frequencies = dict(previous.doc_freq)
    for doc in previous.docs[:leaving]:
        _shift(frequencies, doc.counts, -1)
    _shift(frequencies, joined.counts, 1)
    return SessionIndex((*previous.docs[leaving:], joined), frequencies)


def _shift(frequencies: dict[str, int], terms: Iterable[str], by: int) -> None:
    """Add ``by`` to the document frequency of each of ``terms``; none is kept at zero."""
    for term in terms:
        count = frequencies.get(term, 0) + by
        if count:
            frequencies[term] = count
        else:
            del frequencies[term]


def cosine(left: dict[str, float], right: dict[str, float]) -> float:
    """Cosine similarity of two sparse vectors; 0.0 if either is empty. Each sum is a plain
    running total in iteration order (``sum()`` compensates its rounding from Python 3.12 on),
    so ``scores`` repeats the arithmetic to the bit on every version."""
    if len(left) > len(right):
        left, right = right, left
    dot = 0.0
    for term, weight in left.items():
        dot += weight * right.get(term, 0.0)
    norms = math.sqrt(_squares(left)) * math.sqrt(_squares(right))
    return dot / norms if norms else 0.0


def _squares(vector: dict[str, float]) -> float:
    total = 0.0
    for weight in vector.values():
        total += weight * weight
    return total


def rank(index: SessionIndex, query: str, top_k: int, min_score: float) -> list[dict[str, Any]]:
    """Up to ``top_k`` indexed messages scoring at least ``min_score`` against ``query``, best
    first; ties go to the more recent message."""
    scored = scores(index, query, min_score)
    scored.sort(key=_score_then_position, reverse=True)
    return [
        {"event_id": doc.event_id, "content": doc.content[:SNIPPET_CHARS], "score": round(s, 4)}
        for s, _, doc in scored[:top_k]
    ]


def scores(index: SessionIndex, query: str, min_score: float) -> list[tuple[float, int, _Doc]]:
    """``(score, position, document)`` of each indexed message scoring at least ``min_score``
    against ``query``, in index order: ``cosine`` of their TF-IDF vectors, the same floats."""
    query_vector = index.vector(term_counts(query))
    if not query_vector:
        return []
    # ``cosine``'s arithmetic in its order (the same floats), without building each document's
    # vector, summing the query's norm again for every document, or computing a term's idf once
    # per document holding it. A document sharing no term with the query scores 0 unweighed.
    # The dot product adds only the shared terms: adding 0.0 never changes a float sum. All of
    # a document's work runs in this one frame: a comprehension per document (a call each)
    # costs more than its few terms.
    table = idf_table(len(index.docs))
    idf = {term: table[df] for term, df in index.doc_freq.items()}
    query_norm = math.sqrt(_squares(query_vector))
    query_terms = query_vector.keys()
    query_items = query_vector.items()
    query_weight = query_vector.get
    query_size = len(query_vector)
    sqrt = math.sqrt
    scored = []
    for position, doc in enumerate(index.docs):
        counts = doc.counts
        if query_terms.isdisjoint(counts):
            score = 0.0
        else:
            norm_sq = dot = 0.0
            if query_size > len(counts):  # cosine iterates the shorter vector
                for term, tf in counts.items():
                    weight = tf * idf[term]
                    norm_sq += weight * weight
                    shared = query_weight(term)
                    if shared is not None:
                        dot += weight * shared
                norms = sqrt(norm_sq) * query_norm
            else:
                weights: dict[str, float] = {}
                for term, tf in counts.items():
                    weight = weights[term] = tf * idf[term]
                    norm_sq += weight * weight
                for term, query_w in query_items:
                    shared = weights.get(term)
                    if shared is not None:
                        dot += query_w * shared
                norms = query_norm * sqrt(norm_sq)
            score = dot / norms if norms else 0.0
        if score >= min_score:
            scored.append((score, position, doc))
    return scored


@dataclass(slots=True)
class MemoryProcessor:
    """Retrieves the earlier messages of this session most similar to the current content.

    Built as a THREAD step; ``chatstream run`` runs it inline unless CHATSTREAM_PROCESSOR_KINDS
    moves it. The session's index goes through the shared ``ContextCache`` scoped by
    ``(bot_id, session_id)``: one index per session, extended with each new message (only new
    messages are tokenised); idle sessions' indexes age out by TTL/LRU.
    Data: related [{event_id, content, score}], history_size, cache ("hit": reused as is,
    "extended": reused plus new messages, "miss").
    Raises nothing beyond programming errors.
    """

    cache: ContextCache
    name: str = "memory"
    kind: ExecutionKind = ExecutionKind.THREAD
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 2.0
    top_k: int = 3
    min_score: float = 0.1

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        session = context.session
        # The snapshot is taken before the event, but never let a message relate to itself.
        event_id = context.event.event_id
        history = session.recent_messages
        ids = tuple([m.event_id for m in history])
        if event_id in ids:
            history = tuple([m for m in history if m.event_id != event_id])
            ids = tuple([m.event_id for m in history])
        scope = (context.event.bot_id, session.session_id)
        # One entry per session, extended as the conversation goes on: at most one event per
        # session is in flight, so nothing else writes this entry meanwhile.
        cached: SessionIndex | None = self.cache.get(scope, "tfidf")
        hit = cached is not None and cached.ids == ids
        if cached is None or not hit:
            index = build_index(history, cached, ids)
            self.cache.put(scope, "tfidf", index)
        else:
            index = cached
        return {
            "related": rank(index, context.event.content, self.top_k, self.min_score),
            "history_size": len(history),
            "cache": "hit" if hit else ("extended" if cached is not None else "miss"),
        }
