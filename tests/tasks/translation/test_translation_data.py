"""Parsing, bad input, tfds loader (mocked), sentencepiece, batching and settings for tasks.translation."""

import json
import logging

import numpy as np
import pytest

from tasks.common.cli import main
from tasks.common.errors import UserError
from tasks.translation import data
from tasks.translation.artifacts import TranslationModelDir
from tasks.translation.config import DataConfig, ModelConfig, MonitorConfig, ScheduleConfig
from translation_toy import tiny_pairs, write_tsv


def test_read_pairs_tsv(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes("\ufeffHi.\tSalut.\r\n\nI'm here.\tJe suis là.\tCC-BY 2.0 attribution\n".encode("utf-8"))
    assert data.read_pairs(path) == [("Hi.", "Salut."), ("I'm here.", "Je suis là.")]


@pytest.mark.parametrize(
    "content, line, words",
    [
        (b"Hi.\tSalut.\nno tab here\n", 2, "no tab"),
        (b"Hi.\tSalut.\nGo.\t  \n", 2, "empty target"),
        (b"\tSalut.\n", 1, "empty source"),
        (b"Hi.\tSalut.\nCaf\xe9.\tCaf\xe9.\n", 2, "not valid UTF-8"),
    ],
)
def test_read_pairs_errors_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        data.read_pairs(path)
    assert f"{path}:{line}:" in str(err.value)
    assert words in str(err.value)


def test_read_pairs_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        data.read_pairs(tmp_path / "nope.tsv")
    (tmp_path / "empty.tsv").write_text("\n\n")
    with pytest.raises(UserError, match="no sentence pairs"):
        data.read_pairs(tmp_path / "empty.tsv")


@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_cli_bad_input_exit_2_one_line(tmp_path, capsys, verb):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"Hi.\tSalut.\nCaf\xe9 au lait\n")
    if verb == "train":
        argv = ["translation", "train", "--data", str(bad), "--out", str(tmp_path / "m")]
    else:
        model = tmp_path / "m"
        model.mkdir()
        argv = ["translation", "evaluate", "--model", str(model), "--data", str(bad)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lstm-suite: error:")
    if verb == "train":
        assert f"{bad}:2:" in err[0] and "UTF-8" in err[0]
        assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()
    else:
        assert "config.json" in err[0]


def test_cli_no_tab_in_validation_file(tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", tiny_pairs(10))
    dev = tmp_path / "dev.tsv"
    dev.write_text("Hello.\tBonjour.\nGoodbye. Au revoir.\n", encoding="utf-8")
    code = main(["translation", "train", "--data", str(train), "--val", str(dev), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"{dev}:2: no tab" in err[0]


def test_tfds_loader_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        pairs = data.load_tfds_pairs("tfds:ted_hrlr_translate/pt_to_en")
        swapped = data.load_tfds_pairs("tfds:ted_hrlr_translate/pt_to_en:validation", source_lang="en", target_lang="pt")
        limited = data.load_pairs("tfds:ted_hrlr_translate/pt_to_en", limit=2)
    assert len(pairs) == 6 and all(isinstance(s, str) and s and t for s, t in pairs)
    assert len(swapped) == 6 and len(limited) == 2
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(UserError, match="language 'de' not in the dataset"):
            data.load_tfds_pairs("tfds:ted_hrlr_translate/pt_to_en", source_lang="de")


def test_tfds_spec_parsing():
    assert data.TfdsSpec.parse("tfds:wmt14_translate/fr-en:test") == data.TfdsSpec("wmt14_translate/fr-en", "test")
    assert data.TfdsSpec.parse("tfds:ted_hrlr_translate/pt_to_en").split is None
    with pytest.raises(UserError):
        data.TfdsSpec.parse("tfds:")


def test_tokenizer_specials_round_trip(tmp_path):
    pairs = tiny_pairs(60)
    tok = data.Tokenizer.train([p[1] for p in pairs], 40)
    ids = tok.encode(["Un deux trois."])[0]
    assert ids and not {data.PAD_ID, data.BOS_ID, data.EOS_ID} & set(ids)
    assert tok.decode([ids + [data.EOS_ID, 7, 8]]) == ["Un deux trois."]  # stops at EOS
    tok.save(tmp_path / "t.model")
    again = data.Tokenizer.load(tmp_path / "t.model")
    assert again.encode(["Chat bleu."]) == tok.encode(["Chat bleu."])
    assert (again.processor.pad_id(), again.processor.bos_id(), again.processor.eos_id()) == (0, 2, 3)
    (tmp_path / "damaged.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(UserError, match="damaged.model: not a sentencepiece model"):
        data.Tokenizer.load(tmp_path / "damaged.model")


def test_dataset_batches_bucketed_teacher_forcing():
    pairs = tiny_pairs(50)
    src_tok = data.Tokenizer.train([p[0] for p in pairs], 40)
    tgt_tok = data.Tokenizer.train([p[1] for p in pairs], 40)
    src, tgt = data.encode_pairs(pairs, src_tok, tgt_tok)
    assert all(s[-1] == data.EOS_ID for s in src)
    src, tgt, kept = data.filter_length(src, tgt, 6)
    assert all(len(s) <= 6 and len(t) + 1 <= 6 for s, t in zip(src, tgt)) and len(kept) < 50
    config = DataConfig(batch_size=8, max_length=6, bucket_width=2)
    seen = 0
    for (s, ti), to in data.make_dataset(src, tgt, config, shuffle=True):
        s, ti, to = s.numpy(), ti.numpy(), to.numpy()
        assert s.shape[0] == ti.shape[0] == to.shape[0] <= 8 and ti.shape == to.shape
        assert (ti[:, 0] == data.BOS_ID).all()
        lengths = (to != data.PAD_ID).sum(1)
        assert (to[np.arange(len(to)), lengths - 1] == data.EOS_ID).all()
        shifted = to[:, :-1] > data.EOS_ID  # real target tokens: the decoder input is the output shifted right
        assert (ti[:, 1:][shifted] == to[:, :-1][shifted]).all()
        seen += len(s)
    assert seen == len(kept)


def test_config_json_round_trip(tmp_path):
    from tasks.translation.config import DEFAULT_TRAIN

    sections = {"data": DataConfig(vocab_size=123, val=None), "model": ModelConfig(units=7, bidirectional=False),
                "train": DEFAULT_TRAIN, "schedule": ScheduleConfig(warmup_steps=3), "monitor": MonitorConfig(bleu_every=0)}
    (tmp_path / "model.keras").write_bytes(b"")
    TranslationModelDir(tmp_path, sections).save_config()
    again = TranslationModelDir.open(tmp_path)
    assert again.sections == sections and again.model.memory_dim == 7
    assert json.loads((tmp_path / "config.json").read_text())["task"] == "translation"


def test_bad_config_value_is_one_line(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"task": "translation", "model": {"units": 0}}))
    with pytest.raises(UserError, match="model: units: expected an integer >= 1, got 0"):
        TranslationModelDir.open(tmp_path)


def test_held_out_pairs_are_the_training_split(tmp_path):
    pairs = tiny_pairs(60) + [("Red cat.", "Chat rouge !"), ("red  CAT.", "Le chat rouge.")]
    path = write_tsv(tmp_path / "all.tsv", pairs)
    config = DataConfig(data=str(path), val=None, val_fraction=0.1, test=None)
    train, val = data.training_pairs(config, seed=7)
    held_out, name = data.held_out_pairs(config, seed=7)
    assert held_out == val and len(train) + len(val) == len(pairs) and "held out by source" in name
    assert data.held_out_pairs(config, seed=7, limit=2)[0] == val[:2]
    # every target of one source sentence (case and spaces aside) is on one side of the split
    val_sources = {data.source_key(s) for s, _ in val}
    assert val_sources and not val_sources & {data.source_key(s) for s, _ in train}
    distinct = len({data.source_key(s) for s, _ in pairs})
    assert len(val_sources) == round(0.1 * distinct)


def test_training_drops_the_test_sources_and_never_validates_on_the_test_file(tmp_path):
    train_file = write_tsv(tmp_path / "corpus.train.tsv", tiny_pairs(60, 0))
    test = tiny_pairs(12, 1)
    test_file = write_tsv(tmp_path / "corpus.dev.tsv", test)
    test_sources = {data.source_key(s) for s, _ in test}
    split = data.honest_split(DataConfig(data=str(train_file), val=None), seed=3)  # --test auto: the .dev.tsv beside
    report = split.report
    assert report["test"] == str(test_file) and report["test_sources"] == len(test_sources)
    overlap = [p for p in tiny_pairs(60, 0) if data.source_key(p[0]) in test_sources]
    assert report["test_sources_in_training_file"] == len({data.source_key(p[0]) for p in overlap}) > 0
    assert report["train_pairs_dropped_for_test"] == len(overlap)
    assert not {data.source_key(s) for s, _ in split.train + split.val} & test_sources
    assert data.held_out_test_pairs(DataConfig(data=str(train_file)))[0] == test
    assert data.honest_split(DataConfig(data=str(train_file), test=None), seed=3).report["test"] is None
    with pytest.raises(UserError, match="is the --test file; the test file is never used for early stopping"):
        data.honest_split(DataConfig(data=str(train_file), val=str(test_file)), seed=3)


def test_tiny_training_file_warns(tmp_path, caplog):
    one = write_tsv(tmp_path / "one.tsv", [("Hello.", "Bonjour.")])
    with caplog.at_level(logging.WARNING, logger="tasks.translation.data"):
        train, _ = data.training_pairs(DataConfig(data=str(one), val=str(one)), seed=0)
    assert len(train) == 1 and "only 1 training pair" in caplog.text
    with pytest.raises(UserError, match="too few to hold out a validation set"):
        data.training_pairs(DataConfig(data=str(one), val=None), seed=0)


def test_resume_reuses_the_sentencepiece_models(tmp_path):
    from tasks.translation.artifacts import SOURCE_SPM, TARGET_SPM
    from tasks.translation.train import tokenizers

    first = tokenizers(tmp_path, tiny_pairs(60, 0), DataConfig(vocab_size=40))
    assert (tmp_path / SOURCE_SPM).is_file() and (tmp_path / TARGET_SPM).is_file()
    # an interrupted run resumes with the saved models (its ids must not change), not new ones
    again = tokenizers(tmp_path, [("Completely different text.", "Texte tout autre.")] * 5, DataConfig(vocab_size=40))
    assert again[0].model_proto == first[0].model_proto and again[1].model_proto == first[1].model_proto
    shared = tokenizers(tmp_path / "shared", tiny_pairs(60, 0), DataConfig(vocab_size=60, shared_vocab=True))
    assert shared[0].model_proto == shared[1].model_proto


def test_int16x8_is_refused_in_one_line(tmp_path, capsys):
    code = main(["translation", "export", "--model", str(tmp_path / "m"), "--quantization", "float,int16x8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "int16x8" in err[0] and "SPLIT" in err[0]


def test_checkpoint_average_is_kept_only_when_validation_loss_is_not_worse():
    import keras
    import tensorflow as tf

    from tasks.translation.train import CheckpointAverage

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(loss="mse", optimizer="sgd")
    x = np.ones((4, 1), np.float32)
    average = CheckpointAverage(2, tf.data.Dataset.from_tensor_slices((x, 2 * x)).batch(4))
    average.set_model(model)
    for snapshots, best, kept in (((0.0, 1.0, 3.0), 1.0, 2.0), ((1.0, 5.0), 2.0, 2.0)):
        for w in snapshots:  # only the last 2 epochs count
            model.set_weights([np.asarray([[w]], np.float32)])
            average.on_epoch_end(0)
        model.set_weights([np.asarray([[best]], np.float32)])  # early stopping restored the best epoch
        average.on_train_end()
        assert float(model.get_weights()[0][0, 0]) == kept
        assert average.result["used"] == (kept != best) and average.result["epochs"] == 2
