"""Negation/contrast augmentation rules, the student's transfer texts, and training on a user's own CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.common.cli import main
from tasks.sentiment.augment import augment, join_contrast, negate, negations
from tasks.sentiment.data import Examples
from tasks.sentiment.distill import halves, student_model_config, transfer_texts, word_dropout


@pytest.mark.parametrize("text, label, expected", [
    ("The film is dull.", 0, "The film is not dull."),                  # copula + the only strong word
    ("The cast was very funny.", 1, "The cast was not very funny."),    # an intensifier may stand between
    ("A gorgeous film.", 1, "Not a gorgeous film."),                    # sentence-initial article
    ("It isn't bad.", 1, "It is bad."),                                 # negator removed before a disagreeing word
    ("It was not funny.", 0, "It was funny."),
    ("The film is dull, but the cast is great.", 0, None),              # a contrast word: left alone
    ("The film is dull and ugly.", 0, None),                            # two strong words: left alone
    ("The film is not dull.", 0, None),                                 # already negated, word agrees: left alone
    ("Watch it with a friend.", 1, None),                               # no strong word
])
def test_negate_applies_only_where_the_sentence_allows_it(text, label, expected):
    assert negate(text, label) == expected


def test_negations_after_a_copula_use_not_never_and_the_contracted_negator():
    assert negations("The film is dull.", 0) == ["The film is not dull.", "The film is never dull.",
                                                 "The film isn't dull."]
    assert negations("It seems dull.", 0) == ["It seems not dull."]  # not "seems never", "seemsn't"
    assert negations("Was it dull?", 0) == []  # the word before "dull" is no copula
    assert negations("A gorgeous film.", 1) == ["Not a gorgeous film."]  # an article: "not" only
    assert negations("It isn't bad.", 1) == ["It is bad."]  # the converse: one row
    assert negations("Watch it with a friend.", 1) == []


def test_augment_adds_flipped_and_contrast_rows_after_the_originals():
    texts = ["The film is dull.", "A gorgeous film.", "Lovely music and a kind heart", "Boring and far too long"]
    examples = Examples(texts, np.array([0, 1, 1, 0], np.int32), "x.tsv", np.array([-2, 2, 1, -1], np.float32))
    out = augment(examples, ("negation", "contrast"), seed=0)
    assert out.texts[:4] == texts and list(out.labels[:4]) == [0, 1, 1, 0]
    assert out.texts[4:8] == ["The film is not dull.", "The film is never dull.", "The film isn't dull.",
                              "Not a gorgeous film."]
    assert list(out.labels[4:8]) == [1, 1, 1, 0]
    np.testing.assert_allclose(out.ratings[4:8], [1.0, 1.0, 1.0, -1.0])  # a negated opinion is a weaker one
    assert len(out) == 4 + 4 + 0  # 10% of 4 rows rounds to no contrast row
    assert augment(examples, None, seed=0) is examples
    assert join_contrast("Lovely music.", "The plot drags") == "Lovely music, but the plot drags"


def test_balance_repeats_the_rarer_direction_of_the_negation_rows():
    texts = ["The film is dull.", "The plot is boring.", "A gorgeous film."]
    examples = Examples(texts, np.array([0, 0, 1], np.int32), "x.tsv", None)
    plain = augment(examples, ("negation",), seed=0)
    assert list(plain.labels[3:]) == [1, 1, 1, 1, 1, 1, 0]  # 6 negated negatives (3 forms each), 1 negated positive
    balanced = augment(examples, ("negation", "balance"), seed=0)
    assert sorted(balanced.texts[3:]) == sorted(plain.texts[3:] + ["Not a gorgeous film."] * 5)
    assert np.bincount(balanced.labels[3:]).tolist() == [6, 6]
    assert len(augment(examples, ("balance",), seed=0)) == 3  # nothing to balance without negation rows


def test_transfer_texts_are_word_dropout_copies_and_halves():
    rng = np.random.default_rng(0)
    assert word_dropout("one two three four", rng, rate=1.0) == "one"  # never empty
    assert halves("Lovely music and sets, but the plot drags on") == ["Lovely music and sets", "the plot drags on"]
    assert halves("Too short, ok") == []
    extra = transfer_texts(["Lovely music and sets, but the plot drags on"], copies=2, seed=0)
    assert len(extra) == 2 + 2


def test_student_config_is_one_small_member():
    from tasks.sentiment.config import ModelConfig, StudentConfig

    config = student_model_config(ModelConfig(), StudentConfig(student_embedding_dim=16, student_units=24))
    assert (config.members, config.embedding_dim, config.units, config.ngram_member) == (1, 16, 24, False)
    assert config.pooling == ("last",) and config.lexicon == "vader"


REVIEWS = [
    ("Battery lasts all day and the screen is sharp", "pos"), ("Stopped working after a week", "neg"),
    ("Great value, works exactly as described", "pos"), ("The charger broke on the second day", "neg"),
    ("Fast shipping and a sturdy case", "pos"), ("Cheap plastic, returned it", "neg"),
    ("Love it, my kids use it every day", "pos"), ("Terrible sound, constant crackling", "neg"),
    ("Excellent quality for the price", "pos"), ("Arrived damaged and support never answered", "neg"),
    ("Comfortable and easy to set up", "pos"), ("Waste of money", "neg"),
] * 3


def test_train_and_predict_on_a_users_own_csv(tmp_path, capsys):
    """A non-movie CSV with its own column names, no rating column: one train command, then predict."""
    data = tmp_path / "reviews.csv"
    data.write_text("review,stars_label\n" + "".join(f'"{t}",{y}\n' for t, y in REVIEWS), encoding="utf-8")
    out = tmp_path / "model"
    assert main(["-q", "sentiment", "train", "--data", str(data), "--text-column", "review", "--label-column",
                 "stars_label", "--out", str(out), "--members", "1", "--epochs", "1", "--vocab-size", "60",
                 "--embedding-dim", "8", "--units", "8", "--student-embedding-dim", "8", "--student-units", "8",
                 "--distill-copies", "0"]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["train_examples"] + report["val_examples"] == len(REVIEWS) and (out / "student.keras").is_file()
    assert json.loads((out / "config.json").read_text())["model"]["rating_head"] is False  # no ratings: off
    capsys.readouterr()
    assert main(["-q", "sentiment", "predict", "--model", str(out), "Great battery, love it"]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    label, p_positive, text = line.split("\t")
    assert header == "label\tp_positive\ttext" and text == "Great battery, love it"
    assert label == ("positive" if float(p_positive) >= 0.5 else "negative")
