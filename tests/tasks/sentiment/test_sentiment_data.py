"""Data parsing, bad-input errors (library and CLI), tokenizer, tf.data, tfds loader, configs, metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli
from tasks.common.errors import UserError
from tasks.sentiment.artifacts import Tokenizer
from tasks.sentiment.config import DataConfig, ModelConfig, ObjectiveConfig, StudentConfig
from tasks.sentiment.data import (
    PAD_ID,
    UNK_ID,
    Examples,
    check_training_examples,
    load_examples,
    load_training_data,
    make_dataset,
    member_folds,
    pre_pad,
    read_delimited,
    split_validation,
    train_tokenizer,
)

REPO = Path(__file__).resolve().parents[3]
TRAIN_TSV = REPO / "tasks" / "samples" / "sentiment" / "train.tsv"


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# ----------------------------------------------------------------------------- parsing
def test_reads_tsv_with_extra_columns_and_label_spellings(tmp_path):
    f = write(
        tmp_path / "a.tsv",
        "rating\ttext\tlabel\n"
        "1.5\tA fine, warm film.\tpositive\n"
        "-2\tDull \"and\" long.\tNEGATIVE\n"
        "\n"
        "0.1\tok\t1\n"
        "0\tmeh\t0\n"
        "3\tgreat\tpos\n"
        "-3\tbad\tneg\n",
    )
    ex = read_delimited(f)
    assert ex.texts == ["A fine, warm film.", 'Dull "and" long.', "ok", "meh", "great", "bad"]
    assert ex.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert ex.labels.dtype == np.int32
    assert ex.ratings is None
    rated = read_delimited(f, rating_column="rating")
    assert rated.ratings.tolist() == pytest.approx([1.5, -2, 0.1, 0, 3, -3])
    assert rated.subset([1, 4]).ratings.tolist() == pytest.approx([-2, 3])


def test_stray_quotes_in_tsv_keep_every_row(tmp_path):
    """Issue 18: TSV has no quoting; a stray '"' (like train.tsv line 1710's `9"`) merges nothing."""
    rows = [f'row {i} {chr(34) if i in (3, 151) else ""}inch\tpositive' if i % 2 else f"row {i}\tnegative"
            for i in range(300)]
    f = write(tmp_path / "quotes.tsv", "text\tlabel\n" + "\n".join(rows) + "\n")
    ex = read_delimited(f)
    assert len(ex) == 300 and ex.texts[3] == 'row 3 "inch'
    assert ex.labels.tolist() == [i % 2 for i in range(300)]
    shipped = read_delimited(TRAIN_TSV)
    assert any('9" black and white' in t for t in shipped.texts)
    assert sum(1 for line in TRAIN_TSV.read_text(encoding="utf-8").splitlines()[1:] if line.strip()) == len(shipped)


def test_bad_rating_names_the_line(tmp_path):
    f = write(tmp_path / "r.tsv", "text\tlabel\trating\ngood\tpositive\t1.5\nbad\tnegative\tlots\n")
    with pytest.raises(UserError, match=r"r.tsv:3: rating 'lots'"):
        read_delimited(f, rating_column="rating")


def test_degenerate_training_data_warns(caplog):
    few = Examples(["a", "b", "c"], np.array([0, 1, 1], np.int32), "few.tsv")
    with caplog.at_level("WARNING"):
        check_training_examples(few, 50)
    assert "only 1 'negative' examples" in caplog.text
    with pytest.raises(UserError, match="no 'positive' examples"):
        check_training_examples(Examples(["a"], np.array([0], np.int32), "one.tsv"), 1)


def test_reads_csv_with_quoted_fields_and_bom(tmp_path):
    f = write(tmp_path / "a.csv", '\ufefftext,label\n"Funny, touching, and smart.",positive\n"He said ""no"".",negative\n')
    ex = load_examples(str(f))
    assert ex.texts == ["Funny, touching, and smart.", 'He said "no".']
    assert ex.labels.tolist() == [1, 0]


def test_custom_column_names(tmp_path):
    f = write(tmp_path / "a.tsv", "sentence\tsentiment\nnice\tpositive\n")
    ex = read_delimited(f, text_column="sentence", label_column="sentiment")
    assert ex.texts == ["nice"] and ex.labels.tolist() == [1]


def test_vendored_data_parses():
    ex = read_delimited(TRAIN_TSV)
    assert len(ex) > 8000
    assert set(np.unique(ex.labels)) == {0, 1}


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.tsv", "", ["empty.tsv", "empty"]),
        ("blank.tsv", "\n \n", ["blank.tsv", "empty"]),
        ("header.tsv", "text\tlabel\n", ["header.tsv:1", "header only"]),
        ("cols.tsv", "sentence\tlabel\nfoo\tpositive\n", ["cols.tsv:1", "'text'"]),
        ("nolabel.tsv", "text\tscore\nfoo\t1\n", ["nolabel.tsv:1", "'label'"]),
        ("label.tsv", "text\tlabel\ngood\tpositive\nmeh\tneutral\n", ["label.tsv:3", "'neutral'", "negative|positive"]),
        ("short.tsv", "text\tlabel\ngood\tpositive\nno label here\n", ["short.tsv:3", "1 field"]),
        ("quote.csv", 'text,label\ngood,positive\n"never closed,negative\nfine,positive\n', ["quote.csv:3", "never closed"]),
        ("emptytext.tsv", "text\tlabel\n \tpositive\n", ["emptytext.tsv:2", "empty 'text'"]),
        ("latin1.tsv", "text\tlabel\ngood\tpositive\ncaf\xe9 bad\tnegative\n".encode("latin-1"), ["latin1.tsv:3", "UTF-8"]),
    ],
)
def test_bad_input_errors_name_file_and_line(tmp_path, name, content, expected):
    f = write(tmp_path / name, content)
    with pytest.raises(UserError) as err:
        load_examples(str(f))
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_examples(str(tmp_path / "nope.tsv"))


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "empty"),
        ("text\tlabel\nfine\tpositive\nbad\tmaybe\n", "bad.tsv:3"),
        (b"text\tlabel\nfine\tpositive\n\xff\xfe oops\tnegative\n", "bad.tsv:3"),
        ("words\tlabel\nfine\tpositive\n", "no 'text' column (--text-column); the header has: words, label"),
    ],
)
def test_cli_train_bad_data_exits_2_with_one_line(tmp_path, capsys, content, expected):
    data = write(tmp_path / "bad.tsv", content)
    out_dir = tmp_path / "model"
    result = run_cli("sentiment", "train", "--data", data, "--out", out_dir, capsys=capsys)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.startswith("lstm-suite: error:")]
    assert len(lines) == 1 and expected in lines[0] and str(data) in lines[0]
    assert "Traceback" not in result.stderr
    assert not out_dir.exists() and not (tmp_path / "model.partial").exists()


def test_cli_evaluate_bad_val_and_missing_model(tmp_path, capsys):
    result = run_cli("sentiment", "evaluate", "--model", tmp_path / "none", "--data", TRAIN_TSV, capsys=capsys)
    assert result.returncode == 2 and "no such model directory" in result.stderr and "Traceback" not in result.stderr


def test_cli_tflite_runtime_without_export(tmp_path, capsys):
    from tasks.common.config import TrainConfig
    from tasks.sentiment.artifacts import SentimentModelDir

    sections = {"data": DataConfig(), "model": ModelConfig(), "objective": ObjectiveConfig(), "train": TrainConfig()}
    SentimentModelDir(tmp_path, sections).save_config()
    (tmp_path / "model.keras").write_bytes(b"PK")
    result = run_cli("sentiment", "predict", "--model", tmp_path, "--runtime", "tflite-int8", "good", capsys=capsys)
    err = result.stderr
    assert result.returncode == 2
    assert "model_int8.tflite" in err and f"lstm-suite sentiment export --model {tmp_path}" in err
    assert err.count("\n") == 1


# ----------------------------------------------------------------------------- splits, configs
def test_split_validation_is_stratified_and_disjoint():
    ex = read_delimited(TRAIN_TSV).subset(range(1000))
    train, val = split_validation(ex, 0.1, seed=3)
    assert len(train) + len(val) == 1000
    assert abs(len(val) - 100) <= 1
    assert sorted(train.texts + val.texts) == sorted(ex.texts)
    assert abs(val.labels.mean() - ex.labels.mean()) < 0.02


def test_member_folds_are_stratified_and_cover_the_data():
    ex = read_delimited(TRAIN_TSV).subset(range(1000))
    splits = member_folds(ex, 0.1, members=3, seed=3)
    assert len(splits) == 3
    held_out = [set(val.texts) for _, val in splits]
    for (train, val), other in zip(splits, held_out):
        assert len(train) + len(val) == 1000 and abs(len(val) - 100) <= 1
        assert not set(train.texts) & set(val.texts)
        assert abs(val.labels.mean() - ex.labels.mean()) < 0.02
    assert not held_out[0] & held_out[1] and not held_out[1] & held_out[2]  # a different fold per member
    assert set().union(*(set(train.texts) for train, _ in splits)) == set(ex.texts)  # the ensemble sees all
    # more members than folds reuse the folds in turn
    wrapped = member_folds(ex.subset(range(100)), 0.5, members=3, seed=0)
    assert wrapped[0][1].texts == wrapped[2][1].texts != wrapped[1][1].texts


def test_load_training_data_modes():
    config = DataConfig(data=str(TRAIN_TSV))
    folds = load_training_data(config, seed=1, members=3)
    assert not folds.shared_val and len(folds.pool) == len(read_delimited(TRAIN_TSV))
    assert len({tuple(val.texts[:5]) for _, val in folds.splits}) == 3
    shared = load_training_data(dataclasses.replace(config, member_folds=False), seed=1, members=3)
    assert shared.shared_val and len(shared.pool) == len(shared.splits[0][0])
    assert len({tuple(val.texts[:5]) for _, val in shared.splits}) == 1
    single = load_training_data(config, seed=1, members=1)  # one member: one shared hold-out
    assert single.shared_val and len(single.pool) + len(single.splits[0][1]) == len(folds.pool)


def test_config_round_trip(tmp_path):
    from tasks.common.config import TrainConfig
    from tasks.sentiment.artifacts import SentimentModelDir

    sections = {"data": DataConfig(vocab_size=123), "model": ModelConfig(units=7, rating_head=True),
                "objective": ObjectiveConfig(adversarial_epsilon=0.5), "train": TrainConfig(epochs=7),
                "student": StudentConfig(distill=False, student_units=16)}
    SentimentModelDir(tmp_path, sections, {"rating_scale": [0.1, 2.0]}).save_config()
    (tmp_path / "model.keras").write_bytes(b"PK")
    loaded = SentimentModelDir.open(tmp_path)
    assert loaded.sections == sections and loaded.extra["rating_scale"] == [0.1, 2.0]
    assert json.loads((tmp_path / "config.json").read_text())["task"] == "sentiment"


def test_cli_flags_reach_config(tmp_path, monkeypatch):
    from tasks.common.cli import build_parser, load_task

    monkeypatch.chdir(tmp_path)  # the files are checked (and their header read) before TensorFlow loads
    for name in ("a.tsv", "b.tsv"):
        write(tmp_path / name, "text\tlabel\nfine\tpositive\n")

    parser = build_parser(load_task("sentiment"))
    args = parser.parse_args(
        ["sentiment", "train", "--data", "a.tsv", "--val", "b.tsv", "--units", "32", "--epochs", "3",
         "--vocab-size", "500", "--sampling-alpha", "0", "--rating-weight", "0", "--adversarial-epsilon", "2"]
    )
    args._prepare(args)
    configs = args._configs
    assert (configs["data"].data, configs["data"].val, configs["data"].vocab_size) == ("a.tsv", "b.tsv", 500)
    assert configs["data"].sampling_alpha == 0 and configs["model"].units == 32
    assert (configs["objective"].rating_weight, configs["objective"].adversarial_epsilon) == (0, 2)
    assert configs["train"].epochs == 3 and configs["output"].out == "saved_models/sentiment"


# ----------------------------------------------------------------------------- tokenizer, tf.data
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = read_delimited(TRAIN_TSV).texts[:600]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    train_tokenizer(texts, path, vocab_size=400)
    return Tokenizer(path, max_tokens=40)


def test_tokenizer_ids_reserve_padding(tokenizer):
    ids = tokenizer.encode_many(read_delimited(TRAIN_TSV).texts[:200])
    flat = np.concatenate([np.asarray(x) for x in ids])
    assert flat.min() >= UNK_ID and flat.max() < tokenizer.vocab_size
    assert max(len(x) for x in ids) <= 40
    assert tokenizer.encode("   ") == [UNK_ID]
    # case folding (nmt_nfkc_cf): the same pieces whatever the case
    assert tokenizer.encode("GREAT Movie") == tokenizer.encode("great movie")


def test_python_and_tensorflow_tokenization_agree(tokenizer):
    """tf.data / SavedModel (tensorflow-text) and LiteRT (Python sentencepiece) see the same ids."""
    texts = read_delimited(TRAIN_TSV).texts[:64]
    ex = Examples(texts, np.zeros(len(texts), np.int32), "mem")
    ds = make_dataset(ex, tokenizer.proto, batch_size=8, max_tokens=40, training=False)
    got = {}
    for ids, _ in ds:
        for row in ids.numpy():
            assert row[-1] != PAD_ID  # pre-padded: the last step is a real token
            seq = row[row != PAD_ID].tolist()
            got.setdefault(tuple(seq), 0)
            got[tuple(seq)] += 1
    expected = {}
    for seq in tokenizer.encode_many(texts):
        expected.setdefault(tuple(seq), 0)
        expected[tuple(seq)] += 1
    assert got == expected


def test_dataset_buckets_pad_and_sampling(tokenizer):
    ex = read_delimited(TRAIN_TSV, rating_column="rating").subset(range(256))
    ds = make_dataset(ex, tokenizer.proto, batch_size=16, max_tokens=40, training=True, seed=1, sampling_alpha=0.5,
                      rating_scale=(1.0, 2.0))
    seen, widths = 0, []
    for ids, targets in ds:
        ids = ids.numpy()
        assert ids.dtype == np.int32 and targets["probability"].dtype.name == "float32"
        # ratings standardised with the given scale, paired with their labels
        assert np.all((targets["rating"].numpy() * 2.0 + 1.0 > 0) == (targets["probability"].numpy() == 1))
        lengths = (ids != PAD_ID).sum(1)
        assert lengths.max() == ids.shape[1]  # padded to the longest in the batch only
        assert lengths.min() >= 1 and np.all(ids[:, -1] != PAD_ID)  # zeros first
        widths.append(ids.shape[1])
        seen += len(ids)
    assert seen == 256
    assert len(set(widths)) > 1
    # subword sampling: two epochs segment the same texts differently
    one = Examples(ex.texts[:32], ex.labels[:32], "mem")
    ds = make_dataset(one, tokenizer.proto, batch_size=32, max_tokens=40, training=True, seed=1, sampling_alpha=0.5)
    batches = iter(ds.repeat(2))  # one iterator: independent of any global seed set by other tests
    epochs = [sorted(map(tuple, (r[r != 0].tolist() for r in next(batches)[0].numpy()))) for _ in range(2)]
    assert epochs[0] != epochs[1]


def test_batch_larger_than_the_data_is_clamped_not_waited_for(tokenizer, caplog):
    import threading

    texts = read_delimited(TRAIN_TSV).texts[:40]
    ex = Examples(texts, np.arange(40) % 2, "mem")
    ds = make_dataset(ex, tokenizer.proto, batch_size=10**9, max_tokens=40, training=True, repeat=True)
    got = []
    reader = threading.Thread(target=lambda: got.append(next(iter(ds))), daemon=True)
    reader.start()
    reader.join(60)
    assert got, "a batch larger than a repeated dataset never fills: training would wait forever"
    assert 1 <= len(got[0][0]) <= 40
    assert "--batch-size 1000000000 is larger than the 40 examples: using batches of 40" in caplog.text


def test_pre_pad():
    assert pre_pad([[3, 4], [5]]).tolist() == [[3, 4], [PAD_ID, 5]]
    assert pre_pad([[]]).shape == (1, 1)
    assert pre_pad([[1, 2, 3, 4]], 3).tolist() == [[2, 3, 4]]  # too long: keeps the end


# ----------------------------------------------------------------------------- tfds
def test_tfds_imdb_loader_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=10):
        train = load_examples("tfds:imdb_reviews")
        test = load_examples("tfds:imdb_reviews:test", limit=4)
    assert len(train) == 10 and len(test) == 4
    assert all(isinstance(t, str) and t for t in train.texts)
    assert set(train.labels.tolist()) <= {0, 1}
    assert train.source == "tfds:imdb_reviews"


def test_tfds_unknown_dataset_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError, match="tfds:no_such_dataset_xyz"):
        load_examples("tfds:no_such_dataset_xyz")
    with pytest.raises(UserError, match="expected tfds:NAME"):
        load_examples("tfds:")


# ----------------------------------------------------------------------------- metrics
def test_classification_metrics_by_hand():
    from tasks.sentiment.metrics import classification_metrics

    m = classification_metrics([1, 1, 1, 0, 0], [0.9, 0.2, 0.6, 0.7, 0.1])
    # tp=2 fn=1 fp=1 tn=1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]


def test_vader_rule():
    from tasks.sentiment.metrics import vader_predictions, vader_scores

    texts = ["I love this wonderful film.", "Awful, boring and bad.", "The film is 90 minutes long."]
    scores = vader_scores(texts)
    assert scores[0] > 0 > scores[1] and scores[2] == 0
    # compound >= 0 -> positive, so the neutral sentence counts as positive
    assert vader_predictions(texts).tolist() == [1, 0, 1]


def test_tfidf_svm_peer_is_fitted_once_and_cached(tmp_path):
    from tasks.sentiment.metrics import TfidfSvmPeer

    ex = read_delimited(TRAIN_TSV).subset(range(300))
    calls = []

    def load():
        calls.append(1)
        return ex

    cache = tmp_path / "baseline_svm.npz"
    peer = TfidfSvmPeer(cache, "train.tsv", load)
    assert cache.is_file() and peer.info["c"] in (0.1, 0.3, 1.0)
    assert (peer.predict(ex.texts) == ex.labels).mean() > 0.9  # a linear model fits its training set
    again = TfidfSvmPeer(cache, "train.tsv", load)
    assert len(calls) == 1 and again.predict(ex.texts[:20]).tolist() == peer.predict(ex.texts[:20]).tolist()
    TfidfSvmPeer(cache, "other.tsv", load)  # another training file: refitted
    assert len(calls) == 2


class _Planted:
    """Unpickling this runs code: it writes the file named in ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


@pytest.mark.parametrize("name", ["baseline_svm.npz", "baseline_svm.pkl"])
def test_planted_pickle_in_a_model_directory_never_runs(tmp_path, name):
    import pickle

    from tasks.sentiment.artifacts import BASELINE_FILE
    from tasks.sentiment.metrics import TfidfSvmPeer

    marker = tmp_path / "code_ran"
    planted = pickle.dumps({"train_source": "train.tsv", "pipeline": _Planted(marker), "info": {"c": 1.0}})
    (tmp_path / name).write_bytes(planted)
    # a pickle object array inside an .npz is refused by np.load(allow_pickle=False) as well
    if name.endswith(".npz"):
        np.savez(tmp_path / "inner.npz", meta=np.array([_Planted(marker)], dtype=object))
    ex = read_delimited(TRAIN_TSV).subset(range(120))
    peer = TfidfSvmPeer(tmp_path / BASELINE_FILE, "train.tsv", lambda: ex)
    assert not marker.exists()
    assert peer.predict(ex.texts[:5]).shape == (5,)
    if name.endswith(".npz"):
        (tmp_path / BASELINE_FILE).write_bytes((tmp_path / "inner.npz").read_bytes())
        TfidfSvmPeer(tmp_path / BASELINE_FILE, "train.tsv", lambda: ex)
        assert not marker.exists()
