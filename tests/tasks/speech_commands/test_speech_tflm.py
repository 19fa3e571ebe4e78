"""The flatbuffer rewrites that let TFLM run the speech exports (tflm_rewrite.tflm_compatible)."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from lstm_core.export import TFLiteModel, convert_to_tflite
from lstm_core.tflm import TFLMModel, model_ops
from tasks.speech_commands.tflm_rewrite import tflm_compatible


def _log_model():
    """``log(1000 relu(FakeQuant[0, 4](x)) + 1e-3)`` then a Dense: the front end's last steps (a
    floor far below the int8 step: silence quantizes to log(0) = -inf; mostly positive logs)."""
    inputs = keras.Input((16,), batch_size=1)
    x = keras.layers.Lambda(lambda v: tf.quantization.fake_quant_with_min_max_vars(v, 0.0, 4.0, num_bits=8))(inputs)
    x = keras.layers.Lambda(lambda v: tf.math.log(1000.0 * tf.nn.relu(v) + 1e-3))(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _samples(count=6):
    rng = np.random.default_rng(0)
    return [[(rng.uniform(0, 4, (1, 16)) * (rng.uniform(size=(1, 16)) < 0.5)).astype(np.float32)]
            for _ in range(count)]


def _tensor_types(flatbuffer):
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    return {tensor.type for subgraph in model.subgraphs for tensor in subgraph.tensors}, schema.TensorType


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_rewritten_models_run_on_tflm_and_litert_gives_the_same_numbers(quantization):
    keras.utils.set_random_seed(0)
    model = _log_model()
    original = convert_to_tflite(model, quantization=quantization, representative_dataset=_samples)
    with pytest.raises(Exception, match="QUANTIZE|LOG"):  # what the issue measured
        TFLMModel(original)(*_samples(1)[0])
    rewritten, changes = tflm_compatible(original)
    types, tensor_type = _tensor_types(rewritten)
    assert tensor_type.UINT8 not in types
    if quantization == "int8":
        assert any("int8 LOG" in change for change in changes)
        ops = model_ops(rewritten)
        log_at = ops.index("LOG")
        assert ops[log_at - 2 : log_at + 2] == ["DEQUANTIZE", "MAXIMUM", "LOG", "QUANTIZE"]
        assert tensor_type.FLOAT32 in types  # only the two tensors around LOG
    else:
        assert changes and all("uint8 tensor" in change for change in changes)
    before, after, micro = TFLiteModel(original), TFLiteModel(rewritten), TFLMModel(rewritten)
    step = 1 / 256 if quantization == "int8" else 1e-6
    for sample in _samples():
        np.testing.assert_array_equal(before(*sample)[0], after(*sample)[0])
        np.testing.assert_allclose(micro(*sample)[0], after(*sample)[0], atol=step + 1e-7)
    assert tflm_compatible(rewritten) == (rewritten, [])  # nothing left to rewrite
