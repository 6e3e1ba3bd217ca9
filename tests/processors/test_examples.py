from __future__ import annotations

import pytest

from processors.examples import TextStatsProcessor, flesch_reading_ease, reading_level, syllables


@pytest.mark.parametrize(("word", "count"), [("cat", 1), ("table", 2), ("make", 1),
                                            ("readability", 5), ("rhythm", 1)])
def test_syllable_heuristic(word, count):
    """Vowel groups with a silent final e give common English syllable counts."""
    assert syllables(word) == count


def test_easy_text_scores_easier_than_dense_text(make_context):
    """Short plain sentences read easier than long polysyllabic ones."""
    processor = TextStatsProcessor()
    easy = processor.process(make_context("The cat sat. The dog ran. We had fun."))
    hard = processor.process(make_context(
        "Notwithstanding considerable organisational complexity, interdepartmental "
        "communication necessitates comprehensive documentation of institutional responsibilities."
    ))
    assert easy["reading_level"] == "easy"
    assert hard["reading_level"] == "difficult"
    assert easy["flesch_reading_ease"] > hard["flesch_reading_ease"]
    assert (easy["words"], easy["sentences"]) == (9, 3)


def test_empty_content_is_all_zero(make_context):
    """No words: zero counts and no division by zero."""
    data = TextStatsProcessor().process(make_context(""))
    assert (data["words"], data["sentences"], data["avg_word_length"]) == (0, 0, 0.0)
    assert flesch_reading_ease(0, 0, 0) == 0.0
    assert reading_level(85) == "easy"
