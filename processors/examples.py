"""Example custom processor: text statistics and readability. Copy this module to add your own.

A custom processor is any object with ``name``, ``kind``, ``stage``, ``timeout_s`` and
``process(context) -> dict`` (see ``processors.base.Processor``). Register it with
``ProcessorRegistry.register`` (or return it from a CHATSTREAM_PROCESSOR_PLUGINS factory).
A PROCESS-kind processor is pickled into a "spawn"-started worker, so it must be defined at
module level of an importable module (not in ``__main__`` or inside a function) and hold only
picklable state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from processors.base import ExecutionKind, Stage
from schemas.context import ProcessorContext

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Heuristic English syllable count (vowel groups, silent final "e"); at least 1."""
    word = word.lower()
    count = len(_VOWEL_GROUPS.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(count, 1)


def flesch_reading_ease(words: int, sentences: int, syllable_count: int) -> float:
    """Flesch reading ease: ~90+ very easy, ~60 plain English, below 30 very hard."""
    if words == 0:
        return 0.0
    return 206.835 - 1.015 * (words / max(sentences, 1)) - 84.6 * (syllable_count / words)


def reading_level(score: float) -> str:
    """Coarse band of a Flesch score."""
    if score >= 80:
        return "easy"
    if score >= 50:
        return "standard"
    return "difficult"


@dataclass(slots=True)
class TextStatsProcessor:
    """Word/sentence counts and Flesch readability of the event content (process pool).

    Data: words, sentences, avg_word_length, flesch_reading_ease, reading_level. Pure CPU work,
    never raises on any string.
    """

    name: str = "text_stats"
    kind: ExecutionKind = ExecutionKind.PROCESS
    stage: Stage = Stage.ANALYSIS
    timeout_s: float = 2.0

    def process(self, context: ProcessorContext) -> dict[str, Any]:
        text = context.event.content
        words = _WORD.findall(text)
        sentences = len(_SENTENCE_END.findall(text)) or (1 if words else 0)
        syllable_count = sum(syllables(w) for w in words)
        score = flesch_reading_ease(len(words), sentences, syllable_count)
        return {
            "words": len(words),
            "sentences": sentences,
            "avg_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0.0,
            "flesch_reading_ease": round(score, 1),
            "reading_level": reading_level(score),
        }


def plugin_processors(settings: object) -> list[TextStatsProcessor]:
    """Plugin factory: ``CHATSTREAM_PROCESSOR_PLUGINS=processors.examples:plugin_processors``."""
    return [TextStatsProcessor()]
