from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.cache import ContextCache
from processors.memory import (
    SNIPPET_CHARS,
    MemoryProcessor,
    SessionIndex,
    _Doc,
    build_index,
    cosine,
    idf_table,
    rank,
    scores,
)
from processors.text import term_counts
from schemas.context import HistoryMessage

HISTORY = [
    "My order 1234 hasn't arrived yet and the tracking page shows nothing",
    "I love the new dark mode in the app",
    "Can I change the delivery address on my account?",
    "What's the weather like in Paris this weekend",
]


def test_relevant_earlier_message_comes_first(make_context):
    """The earlier message sharing the most distinctive words ranks first."""
    memory = MemoryProcessor(ContextCache())
    data = memory.process(
        make_context("Any update on the tracking? My order still hasn't arrived", history=HISTORY)
    )
    assert data["related"][0]["event_id"] == "e0"
    assert data["related"][0]["score"] > 0.3
    assert data["history_size"] == 4
    assert [r["score"] for r in data["related"]] == sorted(
        (r["score"] for r in data["related"]), reverse=True
    )


def test_unrelated_query_returns_nothing(make_context):
    """Nothing scores above min_score when no content word is shared."""
    data = MemoryProcessor(ContextCache()).process(
        make_context("Recommend a good jazz album", history=HISTORY)
    )
    assert data["related"] == []


def test_nothing_crosses_sessions_sharing_a_cache(make_context):
    """Two sessions on one cache only ever see their own history."""
    cache = ContextCache()
    memory = MemoryProcessor(cache)
    bob = make_context("where is my order", session_id="bot/chan/bob", history=HISTORY)
    alice = make_context("where is my order", session_id="bot/chan/alice",
                         history=["I like turtles", "order pizza tonight maybe"])
    bob_ids = {r["event_id"] for r in memory.process(bob)["related"]}
    alice_related = memory.process(alice)["related"]
    assert bob_ids == {"e0"}
    assert [r["content"] for r in alice_related] == ["order pizza tonight maybe"]
    assert cache.stats()["size"] == 2


def test_same_session_id_of_another_bot_is_isolated(make_context):
    """Scopes include the bot: equal session ids of two bots never share an index."""
    memory = MemoryProcessor(ContextCache())
    first = memory.process(make_context("order tracking", bot_id="b1", history=HISTORY))
    other = memory.process(make_context("order tracking", bot_id="b2", history=["order soup"]))
    assert first["cache"] == other["cache"] == "miss"
    assert [r["content"] for r in other["related"]] == ["order soup"]


def test_index_cached_per_message_count(make_context):
    """Same history -> cache hit; one more message -> the cached index is extended."""
    memory = MemoryProcessor(ContextCache())
    assert memory.process(make_context("order", history=HISTORY))["cache"] == "miss"
    assert memory.process(make_context("order", history=HISTORY))["cache"] == "hit"
    longer = [*HISTORY, "another order question"]
    assert memory.process(make_context("order", history=longer))["cache"] == "extended"


def test_top_k_truncation_and_self_exclusion(make_context):
    """At most top_k results, content cut to 200 chars, the current event never matched."""
    history = [f"refund request number {i} " + "x" * 300 for i in range(5)]
    context = make_context("refund request", history=history, event_id="e4")
    data = MemoryProcessor(ContextCache(), top_k=2).process(context)
    assert len(data["related"]) == 2
    assert all(len(r["content"]) == 200 for r in data["related"])
    assert "e4" not in {r["event_id"] for r in data["related"]}
    assert data["history_size"] == 4


@given(st.integers(0, 300))
def test_the_idf_table_holds_the_smoothed_idf_of_every_document_frequency(documents):
    """The same floats as the formula (scikit-learn's smoothed idf) for every df."""
    table = idf_table(documents)
    assert len(table) == documents + 1
    assert all(table[df] == math.log((1 + documents) / (1 + df)) + 1.0
               for df in range(documents + 1))
    assert table[documents] == 1.0 and all(w >= 1.0 for w in table)


def test_cosine_bounds():
    """Cosine is 1 for proportional vectors, 0 for disjoint or empty ones."""
    assert cosine({"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 4.0}) == pytest.approx(1.0)
    assert cosine({"a": 1.0}, {"b": 1.0}) == 0.0
    assert cosine({}, {"a": 1.0}) == 0.0


def test_rare_terms_outweigh_common_ones(make_context):
    """IDF: a word in every message counts less than a word in one."""
    ctx = make_context("x", history=["printer issue again", "billing issue again", "issue"])
    index = build_index(ctx.session.recent_messages)
    top = rank(index, "printer issue", top_k=3, min_score=0.0)
    assert top[0]["event_id"] == "e0"


@given(st.lists(st.sampled_from(["order late", "refund please", "parcel lost", "new invoice"]),
                max_size=12), st.integers(0, 6), st.integers(0, 6))
def test_extended_index_equals_a_fresh_one(texts, drop, add):
    """Reusing a previous index (window slid by drop/add messages) gives the same index."""
    messages = tuple(HistoryMessage(f"e{i}", t, datetime.now(UTC)) for i, t in enumerate(texts))
    earlier = messages[: max(0, len(messages) - add)]
    later = messages[drop:]
    assert build_index(later, build_index(earlier)) == build_index(later)


def _reference_index(messages):  # type: ignore[no-untyped-def]
    """TF-IDF built from scratch, the plain way: the oracle for the incremental index."""
    docs = tuple(_Doc(m.event_id, m.content, term_counts(m.content)) for m in messages)
    frequencies: Counter[str] = Counter()
    for doc in docs:
        frequencies.update(doc.counts.keys())
    return SessionIndex(docs, dict(frequencies))


def _reference_rank(index, query, top_k, min_score):  # type: ignore[no-untyped-def]
    query_vector = index.vector(term_counts(query))
    if not query_vector:
        return []
    scored = [(cosine(query_vector, index.vector(doc.counts)), position, doc)
              for position, doc in enumerate(index.docs)]
    scored = sorted((s for s in scored if s[0] >= min_score), key=lambda s: (s[0], s[1]),
                    reverse=True)
    return [{"event_id": d.event_id, "content": d.content[:SNIPPET_CHARS], "score": round(s, 4)}
            for s, _, d in scored[:top_k]]


_WORDS = st.sampled_from(["order", "parcel", "late", "refund", "help", "broken", "screen",
                          "phone", "card", "reset"])


@given(st.lists(st.lists(_WORDS, max_size=6).map(" ".join), max_size=40),
       st.lists(st.lists(_WORDS, max_size=4).map(" ".join), min_size=1, max_size=5),
       st.integers(1, 6), st.integers(1, 20))
def test_the_sliding_index_ranks_exactly_as_one_built_from_scratch(contents, queries, step,
                                                                   window):
    """The window slides by ``step`` messages at a time; each index, extended from the one
    before, has the document frequencies and gives the ranking of an index built anew."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [HistoryMessage(f"e{i}", text, at) for i, text in enumerate(contents)]
    _slides_as_from_scratch(messages, queries, step, window, min_score=0.1)


def _slides_as_from_scratch(messages: list[HistoryMessage], queries: list[str], step: int,
                            window: int, min_score: float) -> None:
    previous = None
    for end in range(0, len(messages) + 1, step):
        shown = tuple(messages[max(0, end - window):end])
        index = build_index(shown, previous)
        reference = _reference_index(shown)
        assert index.docs == reference.docs and index.doc_freq == reference.doc_freq
        for query in queries:
            assert rank(index, query, 3, min_score) == _reference_rank(reference, query, 3,
                                                                        min_score)
        previous = index


@given(st.lists(st.lists(_WORDS, max_size=12).map(" ".join), max_size=20),
       st.lists(_WORDS, min_size=1, max_size=12).map(" ".join))
def test_scores_are_the_cosines_of_the_tfidf_vectors_to_the_last_bit(contents, query):
    """Unrounded: each score is ``cosine`` of the query's and the message's vectors, exactly."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    index = build_index(tuple(HistoryMessage(f"e{i}", text, at)
                              for i, text in enumerate(contents)))
    query_vector = index.vector(term_counts(query))
    expected = [(cosine(query_vector, index.vector(doc.counts)), position, doc)
                for position, doc in enumerate(index.docs)] if query_vector else []
    assert scores(index, query, 0.0) == expected


@given(st.lists(st.tuples(st.lists(_WORDS, max_size=6).map(" ".join), st.booleans()),
                max_size=40),
       st.lists(_WORDS, min_size=1, max_size=4).map(" ".join), st.integers(1, 6),
       st.integers(1, 20))
def test_a_redelivered_event_twice_in_the_history_slides_as_from_scratch(draws, query, step,
                                                                          window):
    """At-least-once: an event answered again after a restore shows twice in its session's
    history (the same id and text). The sliding index still equals one built anew."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    messages: list[HistoryMessage] = []
    for i, (text, again) in enumerate(draws):
        messages.append(messages[-1] if again and messages else HistoryMessage(f"e{i}", text, at))
    _slides_as_from_scratch(messages, [query], step, window, min_score=0.0)


def test_two_messages_under_one_id_never_break_the_sliding_index():
    """A client reusing an event id: whatever copy leaves, the index is the one built anew
    (no negative or missing frequency, so scoring never raises)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    alpha, beta = HistoryMessage("x", "alpha", at), HistoryMessage("x", "beta", at)
    gamma = HistoryMessage("y", "gamma", at)
    first = build_index((alpha, beta))
    for later in ((beta, gamma), (alpha, gamma), (), (gamma,), (alpha, beta, gamma)):
        index = build_index(later, first)
        assert index == _reference_index(later)
        scores(index, "alpha beta gamma", 0.0)
    # The id comes back with other content in the newest message of a window that slid by one.
    for earlier, later in (((beta,), (alpha, beta)), ((gamma, beta), (alpha, beta))):
        index = build_index(later, build_index(earlier))
        assert index == _reference_index(later)
