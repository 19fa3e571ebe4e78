"""``lstm-suite translation train``: sentencepiece + seq2seq training with TensorBoard and resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import keras

from lstm_core.errors import UserError
from lstm_core.io import write_json_atomic
from lstm_core.training import TrainConfig, fit, model_directory, set_seed
from tasks.translation import data as D
from tasks.translation import model as M

log = logging.getLogger(__name__)

SRC_SPM, TGT_SPM = "source.spm.model", "target.spm.model"
MODEL_FILE, CONFIG_FILE, METRICS_FILE = "model.keras", "config.json", "metrics.json"

DEFAULT_TRAIN = TrainConfig(epochs=12, learning_rate=3e-3, patience=3, seed=1234, histogram_freq=0)


@dataclasses.dataclass
class TranslationConfig:
    data: D.DataConfig
    model: M.ModelConfig
    train: TrainConfig
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine decay ends at learning_rate * min_lr_ratio
    clipnorm: float = 1.0
    val_fraction: float = 0.05  # held out of --data when --val is not given
    source: str = ""
    validation: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "TranslationConfig":
        return cls(
            data=D.DataConfig(**obj["data"]),
            model=M.ModelConfig(**obj["model"]),
            train=TrainConfig(**obj["train"]),
            **{k: v for k, v in obj.items() if k not in ("data", "model", "train")},
        )


class BleuCallback(keras.callbacks.Callback):
    """Greedy-decodes the validation sources after each epoch; logs ``val_bleu`` / ``val_chrf``."""

    def __init__(self, seq2seq, src_ids, references, tgt_tok, every: int = 1, log_dir=None):
        super().__init__()
        self.seq2seq, self.src_ids, self.references, self.tgt_tok, self.every = seq2seq, src_ids, references, tgt_tok, every
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.every or (epoch + 1) % self.every:
            return
        from tasks.translation.decode import KerasBackend, greedy_decode
        from tasks.translation.evaluate import corpus_scores

        hyps = self.tgt_tok.decode(greedy_decode(KerasBackend(self.seq2seq), self.src_ids))
        scores = corpus_scores(hyps, self.references)
        logs["val_bleu"], logs["val_chrf"] = scores["bleu"], scores["chrf"]
        if self.log_dir is not None:  # TensorBoard: next to Keras' epoch_loss in logs/validation
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            with self._writer.as_default():
                tf.summary.scalar("epoch_bleu", scores["bleu"], step=epoch)
                tf.summary.scalar("epoch_chrf", scores["chrf"], step=epoch)
            self._writer.flush()
        log.info("epoch %d: val BLEU %.2f chrF %.2f", epoch + 1, scores["bleu"], scores["chrf"])


def _split_validation(pairs, fraction, seed):
    rng = random.Random(seed)
    idx = list(range(len(pairs)))
    rng.shuffle(idx)
    n_val = max(1, int(round(len(pairs) * fraction)))
    if len(pairs) - n_val < 1:
        raise UserError("--data has too few sentence pairs to hold out a validation set; pass --val")
    val = set(idx[:n_val])
    return [p for i, p in enumerate(pairs) if i not in val], [pairs[i] for i in sorted(val)]


def load_training_pairs(args, config: TranslationConfig):
    tfds_kwargs = dict(source_lang=args.source_lang, target_lang=args.target_lang)
    train_pairs = D.load_pairs(args.data, default_split="train", limit=args.max_pairs, **tfds_kwargs)
    if args.val:
        val_pairs = D.load_pairs(args.val, default_split="validation", **tfds_kwargs)
    elif D.is_tfds(args.data) and ":" not in str(args.data)[len(D.TFDS_PREFIX):]:
        val_pairs = D.load_pairs(str(args.data) + ":validation", **tfds_kwargs)
    else:
        train_pairs, val_pairs = _split_validation(train_pairs, config.val_fraction, config.train.seed)
    return train_pairs, val_pairs


def tokenizers(workdir: Path, train_pairs, config: D.DataConfig):
    """Train (or, when resuming, reload) the sentencepiece models in ``workdir``."""
    src_path, tgt_path = workdir / SRC_SPM, workdir / TGT_SPM
    if src_path.is_file() and tgt_path.is_file():
        return D.Tokenizer.load(src_path), D.Tokenizer.load(tgt_path)
    t0 = time.time()
    if config.shared_vocab:
        both = [p[0] for p in train_pairs] + [p[1] for p in train_pairs]
        src_tok = tgt_tok = D.Tokenizer.train(both, config.vocab_size, model_type=config.spm_model_type)
    else:
        src_tok = D.Tokenizer.train([p[0] for p in train_pairs], config.vocab_size, model_type=config.spm_model_type)
        tgt_tok = D.Tokenizer.train([p[1] for p in train_pairs], config.vocab_size, model_type=config.spm_model_type)
    src_tok.save(src_path)
    tgt_tok.save(tgt_path)
    log.info("sentencepiece: source %d / target %d pieces (%.1fs)", src_tok.vocab_size, tgt_tok.vocab_size, time.time() - t0)
    return src_tok, tgt_tok


def count_batches(ds) -> int:
    return int(ds.reduce(0, lambda n, _: n + 1).numpy())


def make_optimizer(config: TranslationConfig, steps_per_epoch: int):
    total = max(1, config.train.epochs * steps_per_epoch)
    warmup = min(config.warmup_steps, max(1, total // 10))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.train.learning_rate * 0.01,
        decay_steps=max(1, total - warmup),
        alpha=config.min_lr_ratio,
        warmup_target=config.train.learning_rate,
        warmup_steps=warmup,
    )
    return keras.optimizers.Adam(schedule, clipnorm=config.clipnorm)


def run_training(args, config: TranslationConfig) -> dict:
    set_seed(config.train.seed)
    started, cpu_started = time.time(), _cpu_seconds()
    train_pairs, val_pairs = load_training_pairs(args, config)
    config.source, config.validation = str(args.data), str(args.val or "")
    with model_directory(args.out) as work:
        src_tok, tgt_tok = tokenizers(work, train_pairs, config.data)
        config.model.src_vocab_size, config.model.tgt_vocab_size = src_tok.vocab_size, tgt_tok.vocab_size
        src, tgt = D.encode_pairs(train_pairs, src_tok, tgt_tok)
        src, tgt, kept = D.filter_length(src, tgt, config.data.max_length)
        if not kept:
            raise UserError(f"{args.data}: no training pair is within --max-length {config.data.max_length} tokens")
        log.info("training pairs: %d (dropped %d longer than %d tokens), validation pairs: %d",
                 len(kept), len(train_pairs) - len(kept), config.data.max_length, len(val_pairs))
        vsrc, vtgt = D.encode_pairs(val_pairs, src_tok, tgt_tok)
        vsrc_f, vtgt_f, _ = D.filter_length(vsrc, vtgt, config.data.max_length)
        if not vsrc_f:
            vsrc_f, vtgt_f = [s[: config.data.max_length] for s in vsrc], [t[: config.data.max_length - 1] for t in vtgt]
        train_ds = D.make_dataset(src, tgt, config.data, shuffle=True, seed=config.train.seed)
        val_ds = D.make_dataset(vsrc_f, vtgt_f, config.data, shuffle=False)
        # bucketing hides the dataset length from Keras; the batch count is fixed, so state it
        import tensorflow as tf

        n_train, n_val = count_batches(train_ds), count_batches(val_ds)
        train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(n_train))
        val_ds = val_ds.apply(tf.data.experimental.assert_cardinality(n_val))
        steps = config.train.steps_per_epoch or n_train

        seq2seq = M.build(config.model)
        M.compile_model(seq2seq.training, config.model, make_optimizer(config, steps))
        write_json_atomic(work / CONFIG_FILE, config.to_json())
        callbacks = []
        if args.bleu_every:
            n = min(len(val_pairs), args.bleu_sentences)
            callbacks.append(BleuCallback(seq2seq, vsrc[:n], [p[1] for p in val_pairs[:n]], tgt_tok, args.bleu_every, work / "logs" / "validation"))
        history = fit(
            seq2seq.training,
            train_ds,
            val_ds,
            workdir=work,
            config=config.train,
            hparams={**_flat("data", config.data), **_flat("model", config.model)},
            callbacks=callbacks,
        )
        seq2seq.training.save(work / MODEL_FILE)
        train_seconds, cpu_seconds = time.time() - started, _cpu_seconds() - cpu_started

        from tasks.translation.decode import KerasBackend, greedy_decode
        from tasks.translation.evaluate import corpus_scores

        hyps = tgt_tok.decode(greedy_decode(KerasBackend(seq2seq), vsrc))
        scores = corpus_scores(hyps, [p[1] for p in val_pairs])
        metrics = {
            "val_bleu_greedy": scores["bleu"],
            "val_chrf_greedy": scores["chrf"],
            "epochs_run": len(history.history.get("loss", [])),
            "train_seconds": round(train_seconds, 1),
            "train_cpu_seconds": round(cpu_seconds, 1),
            "train_pairs": len(kept),
            "val_pairs": len(val_pairs),
            "params": int(seq2seq.training.count_params()),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        }
        write_json_atomic(work / METRICS_FILE, metrics)
        log.info("validation BLEU %.2f chrF %.2f (greedy), %.0fs", scores["bleu"], scores["chrf"], train_seconds)
    return {k: v for k, v in metrics.items() if k != "history"}


def _cpu_seconds() -> float:
    """CPU time of this process (user + system): wall time depends on what else runs."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _flat(prefix, obj):
    return {f"{prefix}.{k}": v for k, v in dataclasses.asdict(obj).items()}


# ----------------------------------------------------------------------------- loading
def load_config(model_dir) -> TranslationConfig:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{model_dir}: not a translation model directory ({CONFIG_FILE} missing); run 'lstm-suite translation train' first")
    try:
        return TranslationConfig.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{path}: invalid translation config: {err}") from None


def load_model(model_dir):
    """``(config, Seq2Seq, source Tokenizer, target Tokenizer)`` from a model directory."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; run 'lstm-suite translation train --out {model_dir}' first")
    import lstm_core.layer  # noqa: F401  (registers the lstm_core layer classes)

    training = keras.models.load_model(path, compile=False)
    seq2seq = M.inference_models(training, config.model)
    return config, seq2seq, D.Tokenizer.load(model_dir / SRC_SPM), D.Tokenizer.load(model_dir / TGT_SPM)

