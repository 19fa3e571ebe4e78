"""The translation task's peer: a Transformer encoder-decoder on the same pairs, tokenizer, budget and decoding.

```sh
python tools/translation_peer.py --like saved_models/translation        # its test file, greedy + beam 4
python tools/translation_peer.py --like DIR --data TSV --epochs 6 --encoder-layers 2 --decoder-layers 2
```

``--like DIR`` is a trained translation model directory: the peer reads its ``config.json`` and
sentencepiece models and re-creates its split (``honest_split``: the same training pairs, the
same validation pairs for early stopping, the test file kept out), then trains a pre-LayerNorm
Transformer (``keras.layers.MultiHeadAttention``, sinusoidal positions, the same label-smoothed
loss, Adam warm-up + cosine schedule, batches and epochs) and decodes with the suite's greedy and
beam search (``tasks.translation.decode``, same length penalty). The last stdout line is the JSON
of ``lstm-suite translation evaluate`` (``runtime: keras``) plus ``peer``, ``params``,
``train_seconds`` and ``epochs_run``.
"""

from __future__ import annotations

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


class _Blocks:
    """The peer's layers, created once and applied to any inputs (training and decoding share them)."""

    def __init__(self, config: PeerConfig, src_vocab: int, tgt_vocab: int):
        import keras

        self.config, L = config, keras.layers
        d = config.d_model
        self.src_embed, self.tgt_embed = L.Embedding(src_vocab, d), L.Embedding(tgt_vocab, d)
        self.drop = L.Dropout(config.dropout)

        def attention():
            return L.MultiHeadAttention(config.heads, d // config.heads, dropout=config.dropout)

        def feed_forward():
            return keras.Sequential([L.Dense(config.ff_dim, activation="relu"), L.Dropout(config.dropout), L.Dense(d)])

        self.encoder = [(L.LayerNormalization(), attention(), L.LayerNormalization(), feed_forward())
                        for _ in range(config.encoder_layers)]
        self.decoder = [(L.LayerNormalization(), attention(), L.LayerNormalization(), attention(),
                         L.LayerNormalization(), feed_forward()) for _ in range(config.decoder_layers)]
        self.encoder_norm, self.decoder_norm = L.LayerNormalization(), L.LayerNormalization()
        self.logits = L.Dense(tgt_vocab)

    def _embed(self, embedding, ids):
        import keras

        x = embedding(ids) * math.sqrt(self.config.d_model)
        return self.drop(x + keras.ops.convert_to_tensor(_positions(keras.ops.shape(ids)[1], self.config.d_model)))

    def encode(self, src_ids, src_mask):
        x = self._embed(self.src_embed, src_ids)
        pad = src_mask[:, None, :] > 0.5
        for norm1, attn, norm2, ff in self.encoder:
            h = norm1(x)
            x = x + self.drop(attn(h, h, attention_mask=pad))
            x = x + self.drop(ff(norm2(x)))
        return self.encoder_norm(x)

    def decode(self, tgt_ids, memory, src_mask):
        import keras

        y = self._embed(self.tgt_embed, tgt_ids)
        cross = keras.ops.repeat(src_mask[:, None, :] > 0.5, keras.ops.shape(tgt_ids)[1], axis=1)
        for norm1, self_attn, norm2, cross_attn, norm3, ff in self.decoder:
            h = norm1(y)
            y = y + self.drop(self_attn(h, h, use_causal_mask=True))
            y = y + self.drop(cross_attn(norm2(y), memory, attention_mask=cross))
            y = y + self.drop(ff(norm3(y)))
        return self.logits(self.decoder_norm(y))


def build_peer(config: PeerConfig, src_vocab: int, tgt_vocab: int):
    """``(training, encoder, decoder)`` Keras models sharing one Transformer's weights.

    * training: ``(source_ids [B,S], target_in_ids [B,T]) -> logits [B,T,V]``
    * encoder: ``source_ids -> memory [B,S,D]``
    * decoder: ``(prefix_ids [B,T], memory, source_mask [B,S]) -> logits of the last position [B,V]``
    """
    import keras

    from tasks.translation.model import SourceMask

    blocks = _Blocks(config, src_vocab, tgt_vocab)
    src = keras.Input((None,), dtype="int32", name="source_ids")
    tgt = keras.Input((None,), dtype="int32", name="target_in_ids")
    src_mask = SourceMask()(src)
    training = keras.Model([src, tgt], blocks.decode(tgt, blocks.encode(src, src_mask), src_mask))
    encoder = keras.Model(src, blocks.encode(src, SourceMask()(src)))
    prefix = keras.Input((None,), dtype="int32", name="prefix_ids")
    memory = keras.Input((None, config.d_model), name="memory")
    mask = keras.Input((None,), name="source_mask")
    decoder = keras.Model([prefix, memory, mask], blocks.decode(prefix, memory, mask)[:, -1])
    return training, encoder, decoder


class TransformerBackend:
    """The decoding interface of ``tasks.translation.decode`` over the peer (greedy and beam unchanged).

    The "state" ``h`` is the target prefix decoded so far (ids [B, t]); every step re-reads it
    through the decoder with a causal mask and returns the next token's logits. ``keys`` and
    ``c`` are unused placeholders (the LSTM's attention keys and cell state).
    """

    def __init__(self, encoder, decoder):
        import tensorflow as tf

        self._encode = tf.function(lambda s: encoder(s, training=False), reduce_retracing=True)
        self._decode = tf.function(lambda p, m, k: decoder([p, m, k], training=False), reduce_retracing=True)

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
    training, encoder, decoder = build_peer(config, source_tokenizer.vocab_size, target_tokenizer.vocab_size)
    epochs = args.epochs or like.train.epochs
    steps = args.steps_per_epoch or int(train_data.reduce(0, lambda n, _: n + 1).numpy())
    schedule = getattr(like, "schedule", None) or ScheduleConfig()
    optimizer = make_optimizer(TrainConfig(epochs=epochs, learning_rate=args.learning_rate), schedule, steps)
    training.compile(optimizer=optimizer, loss=MaskedSmoothedCrossentropy(like.model.label_smoothing),
                     metrics=[masked_accuracy])
    started = time.time()
    stop = keras.callbacks.EarlyStopping(patience=like.train.patience, restore_best_weights=True)
    history = training.fit(train_data.repeat() if args.steps_per_epoch else train_data, validation_data=val_data,
                           epochs=epochs, steps_per_epoch=args.steps_per_epoch, callbacks=[stop], verbose=2)
    train_seconds = time.time() - started
    backend = TransformerBackend(encoder, decoder)
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
        train_seconds=round(train_seconds, 1), epochs_run=len(history.history["loss"]),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", required=True, metavar="DIR", help="the translation model directory to match")
    parser.add_argument("--data", default=None, metavar="TSV", help="evaluation pairs (default: DIR's test file)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--epochs", type=int, default=None, help="default: DIR's --epochs")
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
