"""Emotion of a message (VADER) and its trend over the session."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.base import ExecutionKind, Stage
from schemas.context import ProcessorContext, SessionUpdate

# Standard VADER thresholds on the compound score.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05

# One analyzer per worker process: building it parses the lexicon, and it is never pickled.
_ANALYZER: SentimentIntensityAnalyzer | None = None


def _analyzer() -> SentimentIntensityAnalyzer:
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def _mean(values: tuple[float, ...]) -> float:
    # statistics.fmean's arithmetic (fsum over the count), without its checks on every event.
    return math.fsum(values) / len(values)


def label_for(compound: float) -> str:
    """"positive" at or above +0.05, "negative" at or below -0.05, otherwise "neutral"."""
    if compound >= POSITIVE_THRESHOLD:
        return "positive"
    if compound <= NEGATIVE_THRESHOLD:
        return "negative"
    return "neutral"


def is_escalating(history: tuple[float, ...], compound: float, window: int, drop: float) -> bool:
    """True when ``compound`` is negative and at least ``drop`` below the mean of the last
    ``window`` earlier scores (a single negative message with no history is not escalation)."""
    earlier = history[-window:]
    if not earlier or compound > NEGATIVE_THRESHOLD:
        return False
    return _mean(earlier) - compound >= drop


@dataclass(slots=True)
class EmotionProcessor:
    """VADER sentiment of the event content plus the session's emotional trend.

    Built as a PROCESS step (picklable, it holds no analyzer itself); ``chatstream run`` runs
    it inline unless CHATSTREAM_PROCESSOR_KINDS moves it, as scoring one message takes
    microseconds and a hop to the pool hundreds.
    Data: label, compound, pos, neg, neu, trend (mean of the last ``trend_window`` compounds,
    this one included), escalating. Never raises on any string content.
    """

    name: str = "emotion"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 2.0
    trend_window: int = 5
    escalation_drop: float = 0.3

    def warm_up(self) -> None:
        """Build this worker's analyzer ahead of the first event."""
        _analyzer()

    def worker_context(self, context: ProcessorContext) -> ProcessorContext:
        """Only the content and the emotion trajectory are needed: the message history is left
        behind, which makes the hop into the worker process several times cheaper."""
        return replace(context, session=replace(context.session, recent_messages=()))

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        scores = _analyzer().polarity_scores(context.event.content)
        compound = float(scores["compound"])
        history = context.session.emotion_trajectory
        recent = (*history, compound)[-max(self.trend_window, 1) :]
        return {
            "label": label_for(compound),
            "compound": compound,
            "pos": float(scores["pos"]),
            "neg": float(scores["neg"]),
            "neu": float(scores["neu"]),
            "trend": round(_mean(recent), 4),
            "escalating": is_escalating(
                history, compound, self.trend_window, self.escalation_drop
            ),
        }

    def session_update(self, data: Mapping[str, Any]) -> SessionUpdate:
        """This event's compound score joins the session's emotion trajectory."""
        compound = data.get("compound")
        return SessionUpdate(emotion=float(compound) if isinstance(compound, int | float) else None)
