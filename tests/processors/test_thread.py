from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.thread import ThreadProcessor, has_marker, thread_id_for

PRINTER = [
    "My printer shows a paper jam error in tray two",
    "I removed the paper from the tray but the jam error stays",
]


async def test_first_message_opens_thread_one(make_context):
    """With no current thread, the message opens thread #1 at index 0."""
    data = await ThreadProcessor().process(make_context("hello there", session_id="s"))
    assert data == {
        "thread_id": "s#1", "new_thread": True, "reason": "first", "thread_message_index": 0,
    }


async def test_related_message_continues_thread(make_context):
    """Overlapping words keep the current thread; index counts its earlier messages."""
    context = make_context(
        "The paper jam error came back in tray two", history=PRINTER,
        current_thread_id="s#1", thread_count=1, session_id="s",
    )
    data = await ThreadProcessor().process(context)
    assert (data["thread_id"], data["new_thread"], data["reason"]) == ("s#1", False, "continuation")
    assert data["thread_message_index"] == 2


async def test_idle_gap_starts_new_thread(make_context, t0):
    """Ten minutes of silence start a new thread, even on the same topic."""
    context = make_context(
        "printer paper jam again in tray two", history=PRINTER, current_thread_id="s#1",
        thread_count=1, session_id="s", last_activity=t0 - timedelta(minutes=10),
    )
    data = await ThreadProcessor().process(context)
    assert (data["thread_id"], data["reason"], data["thread_message_index"]) == ("s#2", "idle_gap", 0)


async def test_gap_just_under_limit_is_not_idle(make_context, t0):
    """A gap shorter than the idle limit keeps the thread."""
    context = make_context(
        "printer paper jam again", history=PRINTER, current_thread_id="s#1", thread_count=1,
        last_activity=t0 - timedelta(minutes=9, seconds=59),
    )
    assert (await ThreadProcessor().process(context))["new_thread"] is False


@pytest.mark.parametrize(
    "content", ["btw, the printer paper jam is back", "New topic: printer", "Anyway, tray two"]
)
async def test_marker_starts_new_thread(make_context, content):
    """Explicit subject-change markers open a new thread even with word overlap."""
    context = make_context(content, history=PRINTER, current_thread_id="s#3", thread_count=3,
                           session_id="s")
    data = await ThreadProcessor().process(context)
    assert (data["thread_id"], data["reason"]) == ("s#4", "marker")


async def test_topic_shift_starts_new_thread(make_context):
    """A long message sharing no words with the current thread is a topic shift."""
    context = make_context(
        "Can you book a flight to London tomorrow morning", history=PRINTER,
        current_thread_id="s#1", thread_count=1, session_id="s",
    )
    data = await ThreadProcessor().process(context)
    assert (data["thread_id"], data["reason"]) == ("s#2", "topic_shift")


async def test_short_reply_is_not_a_topic_shift(make_context):
    """Too few content words to judge -> continuation ("sure, go ahead")."""
    context = make_context("sure, go ahead", history=PRINTER, current_thread_id="s#1",
                           thread_count=1)
    assert (await ThreadProcessor().process(context))["reason"] == "continuation"


async def test_only_current_thread_messages_count_for_overlap(make_context):
    """Words from an older thread do not keep a shifted topic in the current thread."""
    history = [("flight to London tomorrow morning booking", "s#1"), *[(m, "s#2") for m in PRINTER]]
    context = make_context("Book a flight to London tomorrow morning", history=history,
                           current_thread_id="s#2", thread_count=2, session_id="s")
    assert (await ThreadProcessor().process(context))["reason"] == "topic_shift"


async def test_naive_last_activity_is_treated_as_utc(make_context, t0):
    """A naive last_activity does not crash the idle-gap comparison."""
    naive = (t0 - timedelta(hours=1)).replace(tzinfo=None)
    context = make_context("printer jam", history=PRINTER, current_thread_id="s#1",
                           thread_count=1, last_activity=naive)
    assert (await ThreadProcessor().process(context))["reason"] == "idle_gap"


def test_markers_are_whole_words_and_ids_deterministic():
    """'btw' inside another word is no marker; ids are session#number."""
    assert has_marker("BTW the login fails")
    assert not has_marker("the btwn value")
    assert thread_id_for("bot/chan/u", 7) == "bot/chan/u#7"


_MARKER_PHRASES = ["new topic", "Different Topic", "change of SUBJECT", "unrelated", "Anyway",
                   "anyways", "BTW", "by the way", "on another note", "different question",
                   "another question", "\u017fubject", "new top\u0130c", "quest\u0130on",
                   "topics", "way", "note", "btways", "\u212aelvin"]


@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(_MARKER_PHRASES)), max_size=8)
       .map(" ".join))
def test_the_marker_prefilter_never_changes_what_the_pattern_finds(content):
    """Words every marker holds are looked for first; the answer is the pattern's."""
    from processors.thread import _MARKERS

    assert has_marker(content) is (_MARKERS.search(content) is not None)


def test_thread_rules_need_at_least_one_context_message():
    from processors.thread import ThreadRules

    for wrong in (0, -1, 1.5):
        with pytest.raises(ValueError, match="context_messages"):
            ThreadRules(context_messages=wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", ["new top\u0130c", "another quest\u0130on",
                                     "change of \u017fubject", "by the WAY", "btw",
                                     "nothing to see", "notebook"])
def test_markers_in_text_beyond_ascii_are_found_as_the_pattern_finds_them(content):
    from processors.thread import _MARKERS

    assert has_marker(content) is (_MARKERS.search(content) is not None)
