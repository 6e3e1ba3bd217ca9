from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.emotion import EmotionProcessor, is_escalating, label_for


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I love this, thank you so much, it works perfectly!", "positive"),
        ("This is terrible, I hate it and nothing works.", "negative"),
        ("The meeting is at 3pm in room 4.", "neutral"),
    ],
)
def test_labels_clear_examples(make_context, text, label):
    """Clearly positive, negative and factual messages get the matching label."""
    data = EmotionProcessor().process(make_context(text))
    assert data["label"] == label
    assert set(data) == {"label", "compound", "pos", "neg", "neu", "trend", "escalating"}


def test_label_thresholds_are_vader_standard():
    """±0.05 on the compound score separates positive, neutral and negative."""
    assert label_for(0.05) == "positive"
    assert label_for(0.0499) == "neutral"
    assert label_for(-0.0499) == "neutral"
    assert label_for(-0.05) == "negative"


def test_trend_is_mean_of_recent_window_including_current(make_context):
    """Trend averages the last trend_window compounds, the current one included."""
    processor = EmotionProcessor(trend_window=3)
    data = processor.process(make_context("The meeting is at 3pm.", emotions=(0.9, 0.3, -0.3)))
    assert data["compound"] == 0.0
    assert data["trend"] == pytest.approx((0.3 - 0.3 + 0.0) / 3, abs=1e-4)


def test_escalating_when_tone_drops_sharply(make_context):
    """A strongly negative message after a neutral/positive run is escalation."""
    data = EmotionProcessor().process(
        make_context("This is awful, I am furious, worst service ever!", emotions=(0.2, 0.0, -0.1))
    )
    assert data["label"] == "negative"
    assert data["escalating"] is True


def test_not_escalating_without_history_or_when_already_negative():
    """One negative message alone, or a steady negative tone, is not escalation."""
    assert not is_escalating((), -0.9, window=5, drop=0.3)
    assert not is_escalating((-0.8, -0.85), -0.8, window=5, drop=0.3)
    assert not is_escalating((0.8,), 0.1, window=5, drop=0.3)  # drop, but not negative


def test_picklable_without_analyzer(make_context):
    """The processor pickles small (no analyzer inside) and works after a round trip."""
    processor = EmotionProcessor(timeout_s=1.5)
    blob = pickle.dumps(processor)
    assert len(blob) < 1000
    clone = pickle.loads(blob)
    context = make_context("great job")
    assert clone.process(context) == processor.process(context)


@given(st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=1, max_size=10).map(tuple))
def test_the_trend_mean_is_statistics_fmean_to_the_bit(values):
    from statistics import fmean

    from processors.emotion import _mean

    assert _mean(values) == fmean(values)
