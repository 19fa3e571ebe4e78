"""Training-text augmentation that teaches negation and "but" contrast (``--augment``).

Built from general rules of English and VADER's word lists, never from the negation check set:

- ``negation``: a sentence whose only strong sentiment word (VADER valence ≥ 1 in size) agrees
  with its label, that has no negator and no contrast word, gets a "not" in front of that word
  when a copula ("is", "was", "seems", ...) or an article stands before it ("is dull" → "is not
  dull", "a gorgeous film" → "not a gorgeous film"), and its label flipped; after a form of "be" also
  with "never" and the contracted negator ("is never dull", "isn't dull"), so each
  sentence teaches the common negators, not "not" alone. The converse: a
  sentence whose only strong word disagrees with its label right after its only negator loses
  the negator ("isn't bad" → "is bad", label flipped). Ratings become ``-rating / 2`` (a negated
  opinion is a weaker one).
- ``balance`` (with ``negation``): the negation rows of the rarer direction (on ``train.tsv`` the
  negated negatives, "is not dull" → positive: 92 against 203) are repeated until both directions
  weigh about the same.
- ``contrast``: two short training sentences of opposite labels joined as "A, but b" with the
  label (and rating) of the second: the clause after "but" carries the opinion.

Rows are added to the training side only (each member's training part, the n-gram member's
data); early-stopping folds stay original text.
"""

from __future__ import annotations

import re

import numpy as np

AUGMENTATIONS = ("negation", "contrast", "balance")
STRONG_VALENCE = 1.0
COPULAS = {"is", "was", "are", "were", "seems", "seemed", "feels", "felt", "looks",
           "looked", "remains", "remained", "becomes", "became", "sounds", "sounded", "'s"}
ARTICLES = {"a", "an"}
CONTRAST_WORDS = {"but", "though", "although", "however", "yet", "despite", "except", "nevertheless", "while"}
BE = {"is", "was", "are", "were", "'s"}  # "is never dull"; not "seems never dull"
CONTRACTED = {"is": "isn't", "was": "wasn't", "are": "aren't", "were": "weren't"}
UNNEGATED = {"isn't": "is", "wasn't": "was", "aren't": "are", "weren't": "were", "don't": "do", "doesn't": "does",
             "didn't": "did", "can't": "can", "couldn't": "could", "won't": "will", "wouldn't": "would",
             "hasn't": "has", "haven't": "have", "not": ""}
WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)?")
CONTRAST_WORDS_MAX = 20
CONTRAST_SHARE = 0.1


def _lists():
    from tasks.sentiment.lexicon import vader_lists

    valences, negators, boosters = vader_lists()
    return valences, negators | {"n't"}, boosters


def _words(text: str):
    """``(lower-case word, start, end)`` of every word (apostrophes normalised to ')."""
    return [(m.group().lower().replace("\u2019", "'"), m.start(), m.end()) for m in WORD.finditer(text)]


def _strong(words, valences):
    return [(i, valences[w]) for i, (w, _, _) in enumerate(words) if abs(valences.get(w, 0.0)) >= STRONG_VALENCE]


def negate(text: str, label: int, lists=None) -> str | None:
    """``text`` with its opinion negated by "not" (see the module docstring), or None where the rules do not apply."""
    variants = negations(text, label, lists)
    return variants[0] if variants else None


def negations(text: str, label: int, lists=None) -> list[str]:
    """Every negated form of ``text`` the rules allow ("not" first; see the module docstring); [] if none."""
    valences, negators, boosters = lists or _lists()
    words = _words(text)
    if any(w in CONTRAST_WORDS for w, _, _ in words):
        return []
    strong = _strong(words, valences)
    if len(strong) != 1:
        return []
    index, valence = strong[0]
    agrees = (valence > 0) == (label == 1)
    negations_at = [i for i, (w, _, _) in enumerate(words) if w in negators or w.endswith("n't")]
    if not negations_at and agrees:
        return _insert_negator(text, words, index, boosters)
    if (len(negations_at) == 1 and not agrees and 0 < index - negations_at[0] <= 3
            and words[negations_at[0]][0] in UNNEGATED):
        word, start, end = words[negations_at[0]]
        replacement = UNNEGATED[word]
        if not replacement:  # drop "not" and one space
            end = end + 1 if text[end:end + 1] == " " else end
        return [text[:start] + _same_case(text[start:end], replacement) + text[end:]]
    return []


def _insert_negator(text: str, words, index: int, boosters) -> list[str]:
    before = index - 1
    if before >= 0 and words[before][0] in boosters:
        before -= 1
    if before < 0:
        return []
    word, start, end = words[before]
    if word in COPULAS:
        at = words[before + 1][1]
        variants = [text[:at] + "not " + text[at:]]
        if word in BE:
            variants.append(text[:at] + "never " + text[at:])
        if word in CONTRACTED:
            variants.append(text[:start] + _same_case(text[start:end], CONTRACTED[word]) + text[end:])
        return variants
    if word in ARTICLES and before + 1 == index and (before == 0 or words[before - 1][0] in COPULAS):
        # "A dreary film." -> "Not a dreary film."; "It's a gem." -> "It's not a gem."
        return [text[:start] + _same_case(text[start:end], "not") + " " + _lower_first(text[start:])]
    return []


def _same_case(original: str, replacement: str) -> str:
    return replacement.capitalize() if original[:1].isupper() and replacement else replacement


def contrast_pairs(texts, labels, rng, count: int):
    """``count`` indices ``(a, b)`` of short sentences with opposite labels and no contrast word."""
    short = [i for i, text in enumerate(texts) if _one_short_sentence(text)]
    by_label = [[i for i in short if labels[i] == label] for label in (0, 1)]
    if not by_label[0] or not by_label[1]:
        return []
    pairs = []
    for _ in range(count):
        second = int(rng.integers(2))
        pairs.append((int(rng.choice(by_label[1 - second])), int(rng.choice(by_label[second]))))
    return pairs


FUNCTION_WORDS = {"the", "a", "an", "it", "it's", "this", "that", "there", "these", "those", "its", "what", "if",
                  "as", "even", "for", "in", "with", "some", "all", "no", "one", "so", "too", "you", "we", "they"}


def _lower_first(text: str) -> str:
    """Lower-case the first letter when the first word is a function word (never a name or "I")."""
    words = _words(text)
    return text[:1].lower() + text[1:] if words and words[0][0] in FUNCTION_WORDS else text


def _one_short_sentence(text: str) -> bool:
    words = _words(text)
    return (3 <= len(words) <= CONTRAST_WORDS_MAX and not re.search(r"[.!?].*\w", text)
            and not any(w in CONTRAST_WORDS for w, _, _ in words))


def join_contrast(first: str, second: str) -> str:
    return f"{first.rstrip(' .!?;,')}, but {_lower_first(second)}"


def _balanced(rows):
    """``rows`` with the rarer label's rows repeated ``round(common / rare)`` times in all."""
    counts = [sum(1 for _, label, _ in rows if label == value) for value in (0, 1)]
    if min(counts) == 0:
        return rows
    rare = int(np.argmin(counts))
    repeat = int(round(max(counts) / min(counts)))
    return [row for row in rows for _ in range(repeat if row[1] == rare else 1)]


def augment(examples, kinds, seed: int):
    """``examples`` followed by the augmented rows of ``kinds`` (``negation``, ``contrast``, ``balance``).

    Args:
        examples: :class:`tasks.sentiment.data.Examples` (labels 0/1; ratings optional).
        kinds: which augmentations (see the module docstring); empty: ``examples`` unchanged.
        seed: seed of the contrast pairs.

    Returns:
        A new ``Examples`` (same source), originals first.
    """
    if not kinds:
        return examples
    texts, labels = list(examples.texts), list(int(y) for y in examples.labels)
    ratings = None if examples.ratings is None else list(examples.ratings)
    if "negation" in kinds:
        lists = _lists()
        rows = [(negated, 1 - int(label), i) for i, (text, label) in enumerate(zip(examples.texts, examples.labels))
                for negated in negations(text, int(label), lists)]
        if "balance" in kinds:
            rows = _balanced(rows)
        for negated, label, i in rows:
            texts.append(negated)
            labels.append(label)
            if ratings is not None:
                ratings.append(-0.5 * float(examples.ratings[i]))
    if "contrast" in kinds:
        rng = np.random.default_rng(seed)
        for a, b in contrast_pairs(examples.texts, examples.labels, rng, int(CONTRAST_SHARE * len(examples))):
            texts.append(join_contrast(examples.texts[a], examples.texts[b]))
            labels.append(int(examples.labels[b]))
            if ratings is not None:
                ratings.append(float(examples.ratings[b]))
    return type(examples)(texts, np.asarray(labels, np.int32), examples.source,
                          None if ratings is None else np.asarray(ratings, np.float32))
