"""Every custom layer of the tasks goes through the shared layer harness (tests/helpers.run_layer_test).

Config round trip, weight counts (``weights``: trainable, non-trainable), symbolic call shapes,
``.keras`` round trip, one ``fit`` step, LiteRT export vs Keras (and
TFLM where the layer is part of a microcontroller export). ``StreamingStep`` wraps a whole clip
model and is checked end to end in tests/tasks/speech_commands (streaming == clip model).
"""

import dataclasses

import numpy as np
import pytest

from helpers import run_layer_test

RNG = np.random.default_rng(0)


def speech_layers():
    from tasks.speech_commands.config import ModelConfig
    from tasks.speech_commands.feature_layers import CausalMeanNormalization, SpecAugment
    from tasks.speech_commands.frontend import LogMelFrontend
    from tasks.speech_commands.model import float_export_atol

    config = ModelConfig()
    audio = (0.1 * RNG.standard_normal((1, 16000))).astype("float32")
    frames = RNG.standard_normal((1, 49, 8)).astype("float32")
    return {
        "speech LogMelFrontend": dict(
            factory=lambda: LogMelFrontend(dataclasses.asdict(config)), inputs=audio, weights=(0, 3),
            atol=float_export_atol(config), tflm=False),  # its TFLM form is the export's rewrite (speech tests)
        "speech CausalMeanNormalization": dict(factory=lambda: CausalMeanNormalization(0.8), inputs=frames,
                                                weights=(0, 0)),
        "speech SpecAugment (identity at inference)": dict(factory=lambda: SpecAugment(seed=1), inputs=frames,
                                                             weights=(0, 0)),
    }


def translation_layers():
    from tasks.translation.model import (
        FinalEncoderState,
        FinalFromMemory,
        LuongAttention,
        Reorder,
        SourceMask,
        SplitState,
        Take,
    )

    memory = RNG.standard_normal((1, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0]], "float32")
    return {
        "translation SourceMask": dict(factory=SourceMask, inputs=np.array([[5, 7, 2, 0, 0]], "int32"), weights=(0, 0)),
        "translation FinalEncoderState": dict(factory=lambda: FinalEncoderState(4, True), inputs=[memory, mask],
                                                 weights=(0, 0)),
        "translation LuongAttention": dict(
            factory=lambda: LuongAttention(mask_penalty=16.0),
            inputs=[RNG.standard_normal((1, 8)).astype("float32"), memory, memory, mask], weights=(0, 0)),
        "translation SplitState": dict(factory=SplitState, inputs=RNG.standard_normal((1, 8)).astype("float32"),
                                          weights=(0, 0)),
        "translation Reorder": dict(factory=Reorder, inputs=[memory, np.array([[3, 2, 1, 0, 4, 5]], "int32")],
                                       weights=(0, 0)),
        "translation FinalFromMemory": dict(factory=lambda: FinalFromMemory(4, True),
                                           inputs=[memory, np.array([[3]], "int32")], weights=(0, 0)),
        "translation Take": dict(factory=Take, inputs=np.array([[3, 2, 1, 0]], "int32"), weights=(0, 0)),
    }


def sentiment_layers():
    from tasks.sentiment.model import BagOfPieces, LastAndMaxPool

    def wide():
        layer = BagOfPieces(50)
        layer.build((None, None))
        layer.weights[0].assign(RNG.standard_normal((50, 1)).astype("float32"))  # a fresh one is all zeros
        return layer

    def ngram():
        from tasks.sentiment.ngram import BIGRAM_BUCKETS, PieceNgramLogit

        layer = PieceNgramLogit(50)
        layer.set_fitted({"unigram": RNG.standard_normal(50), "bigram": RNG.standard_normal(BIGRAM_BUCKETS),
                          "bias": 0.3})
        return layer

    ids = np.array([[0, 0, 0, 7, 3, 49, 12, 3]], "int32")
    outputs = np.tanh(RNG.standard_normal((1, 8, 4))).astype("float32")  # LSTM outputs lie in (-1, 1)
    return {"sentiment BagOfPieces": dict(factory=wide, inputs=ids, weights=(1, 0)),
            "sentiment PieceNgramLogit": dict(factory=ngram, inputs=ids, weights=(0, 3)),  # fitted, frozen tables
            "sentiment LastAndMaxPool": dict(factory=LastAndMaxPool, inputs=[outputs, ids], weights=(0, 0))}


CASES = {**speech_layers(), **translation_layers(), **sentiment_layers()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_custom_layer_through_the_harness(name, tmp_path):
    case = CASES[name]
    trainable, non_trainable = case["weights"]
    reports = run_layer_test(
        case["factory"], case["inputs"], tmp_path, quantizations=(None,), atol=case.get("atol", 1e-4),
        tflm=case.get("tflm", True), positional=isinstance(case["inputs"], list),
        expected_num_trainable_weights=trainable, expected_num_non_trainable_weights=non_trainable,
    )
    assert reports["float"].max_abs_diff <= case.get("atol", 1e-4)
