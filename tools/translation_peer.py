"""The translation task's peer: a Transformer encoder-decoder on the same pairs, tokenizer, budget and decoding.

```sh
python tools/translation_peer.py --like saved_models/translation        # its test file, greedy + beam 4
python tools/translation_peer.py --like DIR --data TSV --epochs 6 --encoder-layers 2 --decoder-layers 2
python tools/translation_peer.py --like DIR --time-budget 600 --epochs 5   # as many epochs as fit in 600 s of fit
```

``--like DIR`` is a trained translation model directory: the peer reads its ``config.json`` and
sentencepiece models and re-creates its split (``honest_split``: the same training pairs, the
same validation pairs for early stopping, the test file kept out), then trains a pre-LayerNorm
Transformer (``keras.layers.MultiHeadAttention``, sinusoidal positions, the same label-smoothed
loss, Adam warm-up + cosine schedule, batches and epochs) and decodes with the suite's greedy and
beam search (``tasks.translation.decode``, same length penalty). The last stdout line is the JSON
of ``lstm-suite translation evaluate`` (``runtime: keras``) plus ``peer``, ``params``,
``train_seconds``, ``train_cpu_seconds`` and ``epochs_run``.

The budget is epochs by default (DIR's ``--epochs``). The peer is slower per epoch than the LSTM,
so an equal *time* budget is ``--time-budget SECONDS`` (e.g. the LSTM's ``wall_seconds`` from
``train_report.json``): after every epoch the peer estimates how many whole epochs fit in the
budget at its mean epoch time so far (nearest whole number, at least one), stretches or shrinks
its cosine schedule to end there, and stops when it gets there; ``--epochs`` is then only the
first guess that the schedule starts from.
"""

import argparse
import dataclasses
import json
import math
import time

import numpy as np


@dataclasses.dataclass
class PeerConfig:
    d_model: int = 128
    heads: int = 4
    ff_dim: int = 512
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1


def _positions(length, depth):
    """Sinusoidal position encodings [length, depth] (no length limit: outputs may be 2·S + 10 long)."""
    import tensorflow as tf

    position = tf.cast(tf.range(length), tf.float32)[:, None]
    rate = tf.exp(-math.log(10000.0) * tf.cast(tf.range(0, depth, 2), tf.float32) / depth)[None]
    angles = position * rate
    return tf.reshape(tf.stack([tf.sin(angles), tf.cos(angles)], axis=-1), (length, -1))[:, :depth]


def _layers(config: PeerConfig, src_vocab: int, tgt_vocab: int) -> dict:
    import keras

    L, d = keras.layers, config.d_model

    def attention():
        return L.MultiHeadAttention(config.heads, d // config.heads, dropout=config.dropout)

    def feed_forward():
        return keras.Sequential([L.Dense(config.ff_dim, activation="relu"), L.Dropout(config.dropout), L.Dense(d)])

    return {
        "src_embed": L.Embedding(src_vocab, d), "tgt_embed": L.Embedding(tgt_vocab, d), "drop": L.Dropout(config.dropout),
        "encoder": [(L.LayerNormalization(), attention(), L.LayerNormalization(), feed_forward())
                    for _ in range(config.encoder_layers)],
        "decoder": [(L.LayerNormalization(), attention(), L.LayerNormalization(), attention(), L.LayerNormalization(),
                     feed_forward()) for _ in range(config.decoder_layers)],
        "encoder_norm": L.LayerNormalization(), "decoder_norm": L.LayerNormalization(), "logits": L.Dense(tgt_vocab),
    }


def build_peer(config: PeerConfig, src_vocab: int, tgt_vocab: int):
    """A pre-LayerNorm Transformer encoder-decoder (``keras.layers.MultiHeadAttention``), built.

    ``model([source_ids [B,S], target_in_ids [B,T]]) -> logits [B,T,V]`` for training;
    ``model.encode(source_ids) -> memory [B,S,D]`` and ``model.decode(prefix [B,T], memory,
    source_mask [B,S]) -> logits [B,T,V]`` for decoding.
    """
    import keras
    import tensorflow as tf

    from tasks.translation.data import PAD_ID

    class TransformerPeer(keras.Model):
        def __init__(self):
            super().__init__(name="transformer_peer")
            self.parts = _layers(config, src_vocab, tgt_vocab)

        def _embed(self, embedding, ids, training):
            x = self.parts[embedding](ids) * math.sqrt(config.d_model)
            return self.parts["drop"](x + _positions(tf.shape(ids)[1], config.d_model), training=training)

        def encode(self, src_ids, training=False):
            x = self._embed("src_embed", src_ids, training)
            pad = tf.not_equal(src_ids, PAD_ID)[:, None, :]
            drop = self.parts["drop"]
            for norm1, attn, norm2, ff in self.parts["encoder"]:
                h = norm1(x)
                x = x + drop(attn(h, h, attention_mask=pad, training=training), training=training)
                x = x + drop(ff(norm2(x), training=training), training=training)
            return self.parts["encoder_norm"](x)

        def decode(self, tgt_ids, memory, src_mask, training=False):
            y = self._embed("tgt_embed", tgt_ids, training)
            cross = tf.repeat(src_mask[:, None, :] > 0.5, tf.shape(tgt_ids)[1], axis=1)
            drop = self.parts["drop"]
            for norm1, self_attn, norm2, cross_attn, norm3, ff in self.parts["decoder"]:
                h = norm1(y)
                y = y + drop(self_attn(h, h, use_causal_mask=True, training=training), training=training)
                y = y + drop(cross_attn(norm2(y), memory, attention_mask=cross, training=training), training=training)
                y = y + drop(ff(norm3(y), training=training), training=training)
            return self.parts["logits"](self.parts["decoder_norm"](y))

        def call(self, inputs, training=False):
            src, tgt = inputs
            mask = tf.cast(tf.not_equal(src, PAD_ID), tf.float32)
            return self.decode(tgt, self.encode(src, training), mask, training)

    model = TransformerPeer()
    model([tf.ones((1, 3), tf.int32), tf.ones((1, 2), tf.int32)])
    return model


def _budget_parts(peak: float, schedule, total_steps: int, steps_per_epoch: int, budget_seconds: float):
    """(learning-rate schedule, callback): the LSTM's warm-up + cosine (``warmup_cosine``) with its decay
    length in a variable, which the callback refits to the wall-time budget after every epoch."""
    import keras
    import tensorflow as tf

    from tasks.translation.train import warmup_cosine

    learning_rate = warmup_cosine(peak, schedule, total_steps)
    learning_rate.decay_steps = tf.Variable(float(learning_rate.decay_steps), trainable=False, dtype=tf.float32)

    class TimeBudget(keras.callbacks.Callback):
        """After each epoch: the whole epochs that fit in the budget; refit the schedule, stop when reached."""

        def on_train_begin(self, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            per_epoch = (time.time() - self.started) / done
            fit = max(done, round(budget_seconds / per_epoch))
            learning_rate.decay_steps.assign(float(max(1, fit * steps_per_epoch - learning_rate.warmup_steps)))
            print(f"time budget: {per_epoch:.0f} s per epoch, {fit} epoch(s) fit in {budget_seconds:.0f} s", flush=True)
            if done >= fit:
                self.model.stop_training = True

    return learning_rate, TimeBudget()


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TransformerBackend:
    """The decoding interface of ``tasks.translation.decode`` over the peer (greedy and beam unchanged).

    The "state" ``h`` is the target prefix decoded so far (ids [B, t]); every step re-reads it
    through the decoder with a causal mask and returns the next token's logits. ``keys`` and
    ``c`` are unused placeholders (the LSTM's attention keys and cell state).
    """

    def __init__(self, model):
        import tensorflow as tf

        self._encode = tf.function(lambda s: model.encode(s), reduce_retracing=True)
        self._decode = tf.function(lambda p, m, k: model.decode(p, m, k)[:, -1], reduce_retracing=True)

    def encode(self, src):
        src = np.asarray(src, np.int32)
        memory = np.asarray(self._encode(src))
        batch = len(src)
        return memory, np.zeros((batch, 1), np.float32), np.zeros((batch, 0), np.int32), np.zeros((batch, 1), np.float32)

    def step(self, token, h, c, memory, keys, src_mask):
        prefix = np.concatenate([np.asarray(h, np.int32), np.asarray(token, np.int32)[:, None]], axis=1)
        logits = np.asarray(self._decode(prefix, memory, np.asarray(src_mask, np.float32)))
        return logits, prefix, c


def _data(like, args):
    """(train dataset, validation dataset, evaluation pairs, data name, tokenizers) as the LSTM run had them."""
    from tasks.translation.data import encode_pairs, filter_length, honest_split, load_pairs, make_dataset

    split = honest_split(like.data, like.train.seed)
    source_tokenizer, target_tokenizer = like.tokenizers()
    source, target = encode_pairs(split.train, source_tokenizer, target_tokenizer)
    source, target, _ = filter_length(source, target, like.data.max_length)
    val_source, val_target = encode_pairs(split.val, source_tokenizer, target_tokenizer)
    val_source, val_target, _ = filter_length(val_source, val_target, like.data.max_length)
    train_data = make_dataset(source, target, like.data, shuffle=True, seed=like.train.seed)
    val_data = make_dataset(val_source, val_target, like.data, shuffle=False)
    name = args.data or split.report.get("test")
    if not name:
        raise SystemExit("translation_peer: the --like model has no test file; pass --data TSV")
    pairs = load_pairs(name, default_split="test", limit=args.limit)
    return train_data, val_data, pairs, name, (source_tokenizer, target_tokenizer)


def train_peer(args) -> dict:
    """Train the Transformer like the ``--like`` model was trained; return evaluate's JSON for it."""
    import keras

    from tasks.common.artifacts import evaluation_result
    from tasks.common.config import TrainConfig
    from tasks.translation.artifacts import TranslationModelDir
    from tasks.translation.config import DecodeConfig, ScheduleConfig
    from tasks.translation.decode import translate
    from tasks.translation.metrics import corpus_scores
    from tasks.translation.model import MaskedSmoothedCrossentropy, masked_accuracy
    from tasks.translation.train import make_optimizer

    like = TranslationModelDir.open(args.like)
    keras.utils.set_random_seed(like.train.seed)
    train_data, val_data, pairs, name, (source_tokenizer, target_tokenizer) = _data(like, args)
    config = PeerConfig(args.d_model, args.heads, args.ff_dim, args.encoder_layers, args.decoder_layers, args.dropout)
    training = build_peer(config, source_tokenizer.vocab_size, target_tokenizer.vocab_size)
    epochs = args.epochs or like.train.epochs
    steps = args.steps_per_epoch or int(train_data.reduce(0, lambda n, _: n + 1).numpy())
    schedule = getattr(like, "schedule", None) or ScheduleConfig()
    callbacks = [keras.callbacks.EarlyStopping(patience=like.train.patience, restore_best_weights=True)]
    if args.time_budget:
        learning_rate, budget = _budget_parts(args.learning_rate, schedule, epochs * steps, steps, args.time_budget)
        optimizer = keras.optimizers.Adam(learning_rate, clipnorm=schedule.clipnorm)
        callbacks.append(budget)
    else:
        optimizer = make_optimizer(TrainConfig(epochs=epochs, learning_rate=args.learning_rate), schedule, steps)
    training.compile(optimizer=optimizer, loss=MaskedSmoothedCrossentropy(like.model.label_smoothing), jit_compile=False,
                     metrics=[masked_accuracy])
    started, cpu_started = time.time(), _cpu_seconds()
    history = training.fit(train_data.repeat() if args.steps_per_epoch else train_data, validation_data=val_data,
                           epochs=1000 if args.time_budget else epochs, steps_per_epoch=args.steps_per_epoch,
                           callbacks=callbacks, verbose=2)
    train_seconds, train_cpu_seconds = time.time() - started, _cpu_seconds() - cpu_started
    backend = TransformerBackend(training)
    sources, references = [p[0] for p in pairs], [p[1] for p in pairs]
    side_by_side, decode_started = {}, time.time()
    for beam, label in [(1, "greedy")] + ([(args.beam, "beam")] if args.beam > 1 else []):
        hypotheses, _ = translate(backend, source_tokenizer, target_tokenizer, sources,
                                  DecodeConfig(beam=beam, length_penalty=args.length_penalty))
        scores = corpus_scores(hypotheses, references)
        side_by_side.update({f"{label}_bleu": scores["bleu"], f"{label}_chrf": scores["chrf"]})
    return evaluation_result(
        task="translation", model=f"transformer peer of {like.path}", runtime="keras", data=name,
        examples=len(pairs), plot=None, **scores, **side_by_side, beam=args.beam,
        length_penalty=args.length_penalty if args.beam > 1 else None,
        decode_seconds=round(time.time() - decode_started, 2), translations=None,
        peer="transformer", params=int(training.count_params()), peer_config=dataclasses.asdict(config),
        train_seconds=round(train_seconds, 1), train_cpu_seconds=round(train_cpu_seconds, 1),
        time_budget=args.time_budget, epochs_run=len(history.history["loss"]),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", required=True, metavar="DIR", help="the translation model directory to match")
    parser.add_argument("--data", default=None, metavar="TSV", help="evaluation pairs (default: DIR's test file)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: DIR's --epochs (with --time-budget: the first guess of the epochs that fit)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="train as many whole epochs as fit in this many wall seconds (e.g. the LSTM's "
                             "train_report.json wall_seconds); default: an epoch budget")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="cap on batches per epoch (quick runs)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam rate (default: 1e-3)")
    parser.add_argument("--beam", type=int, default=4, help="beam width beside greedy (default: 4)")
    parser.add_argument("--length-penalty", type=float, default=0.6, help="GNMT alpha (default: 0.6)")
    defaults = PeerConfig()
    for field in dataclasses.fields(PeerConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(getattr(defaults, field.name)), default=getattr(defaults, field.name),
                            help=f"default: {getattr(defaults, field.name)}")
    args = parser.parse_args(argv)
    print(json.dumps(train_peer(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
