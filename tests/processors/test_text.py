"""Tokenising: remembered for short texts, the same words either way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.text import _CACHED_TEXT_CHARS, STOPWORDS, term_counts, tokenize


def test_content_words_lowercased_without_stopwords_and_plurals_folded() -> None:
    assert tokenize("Hello, my Refunds haven't ARRIVED yet! a b") == ("refund", "havent",
                                                                     "arrived", "yet")
    assert term_counts("order order parcel") == {"order": 2, "parcel": 1}


@given(st.text(max_size=2 * _CACHED_TEXT_CHARS))
def test_a_remembered_text_gives_what_a_fresh_one_gives(text: str) -> None:
    from processors.text import _tokens

    first, second = tokenize(text), tokenize(text)
    assert first == second == _tokens(text) and isinstance(first, tuple)
    assert all(len(w) > 1 and w not in STOPWORDS for w in first)


def test_long_texts_are_not_remembered() -> None:
    from processors.text import _remembered_tokens

    _remembered_tokens.cache_clear()
    before = _remembered_tokens.cache_info().currsize
    tokenize("parcel " * _CACHED_TEXT_CHARS)
    assert _remembered_tokens.cache_info().currsize == before
    tokenize("a fresh short text about parcels")
    assert _remembered_tokens.cache_info().currsize == before + 1


@given(st.text(max_size=2 * _CACHED_TEXT_CHARS))
def test_term_counts_are_a_counters_in_its_order_and_read_only(text: str) -> None:
    from collections import Counter

    counts = term_counts(text)
    expected = Counter(tokenize(text))
    assert list(counts.items()) == list(expected.items())  # the same order: the same float sums
    assert term_counts(text) == counts
    try:
        counts["extra"] = 1  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("term counts shared between callers must not be writable")


def test_words_of_every_script_are_words() -> None:
    """Accented, Cyrillic and Arabic letters make words (not fragments of ASCII ones); a
    typographic apostrophe joins a word as a plain one does; a zero-width character inside a
    word does not split it."""
    assert tokenize("Mon café, très bien") == ("mon", "café", "trè", "bien")
    assert tokenize("привет мир") == ("привет", "мир")
    assert tokenize("مرحبا بالعالم") == ("مرحبا", "بالعالم")
    assert tokenize("I can\u2019t find my parcel") == tokenize("I can't find my parcel")
    assert tokenize("par\u200bcel deli\u200dvery") == ("parcel", "delivery")


def test_a_question_mark_of_any_script_makes_a_question() -> None:
    from processors.text import is_question

    assert all(is_question(text) for text in ("where is it?", "元気ですか\uff1f", "كيف حالك؟"))
    assert not is_question("it arrived.")
