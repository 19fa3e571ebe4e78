"""Fixed per-token prior knowledge for the sentiment model: VADER's word valences and negators.

VADER (Hutto & Gilbert 2014; the ``vaderSentiment`` package, MIT) ships a hand-rated lexicon of
about 7,500 words (mean valence, -4..4), a list of negators ("not", "never", "n't", ...) and of
intensifiers ("very", "barely", ...). :func:`prior_table` maps each sentencepiece piece of a
tokenizer to three fixed numbers: valence / 4, 1 for a negator, the intensifier's increment
(0.293 / -0.293, scaled to ±1) — 0 where the piece is not a whole word in those lists. The model
looks them up as a second, non-trainable embedding (one more ``GATHER`` from a constant table),
so the 8,000 training sentences do not have to teach it that "dull" is bad or that "not" flips.
"""

from __future__ import annotations

import numpy as np

LEXICONS = ("vader",)
PRIOR_COLUMNS = ("valence", "negation", "intensifier")
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁" that starts a word


def vader_lists() -> tuple[dict[str, float], set[str], dict[str, float]]:
    """VADER's (word → valence, negators, word → intensifier increment), all lower case."""
    from vaderSentiment import vaderSentiment as vader

    analyzer = vader.SentimentIntensityAnalyzer()
    valences = {word.lower(): float(value) for word, value in analyzer.lexicon.items()}
    negators = {word.lower() for word in vader.NEGATE}
    boosters = {word.lower(): float(value) for word, value in vader.BOOSTER_DICT.items()}
    return valences, negators, boosters


def prior_table(pieces: list[str], lexicon: str = "vader") -> np.ndarray:
    """``[len(pieces), 3]`` float32: (valence / 4, negator, intensifier / 0.293) per piece.

    A piece counts when, without its leading "▁", it is a whole word of the lists ("▁good" and
    "good" both match "good"; "n't" and "▁not" are negators).

    Example:

    ```python
    prior_table(["<pad>", "<unk>", "▁good", "▁not", "▁very"])[2:]
    # [[0.475, 0, 0], [0, 1, 0], [0, 0, 1]]
    ```
    """
    if lexicon not in LEXICONS:
        raise ValueError(f"unknown lexicon {lexicon!r}; expected one of {', '.join(LEXICONS)}")
    valences, negators, boosters = vader_lists()
    scale = max(abs(value) for value in boosters.values())
    table = np.zeros((len(pieces), len(PRIOR_COLUMNS)), dtype=np.float32)
    for index, piece in enumerate(pieces):
        word = piece.replace(WORD_BOUNDARY, "").strip().lower()
        if not word or word.startswith("<"):
            continue
        table[index, 0] = valences.get(word, 0.0) / 4.0
        table[index, 1] = 1.0 if word in negators or word == "n't" else 0.0
        table[index, 2] = boosters.get(word, 0.0) / scale
    return table
