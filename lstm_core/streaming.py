"""One-step (streaming) models: explicit (h, c) state in and out, for frame-by-frame inference.

The fused TFLite op keeps its state inside the interpreter; an app that feeds one frame at a
time (keyword spotting, online forecasting) wants the state as plain tensors it owns. These
models reuse the trained layer's weights through :meth:`lstm_core.LSTM.step`, so stepping them
over a sequence reproduces the whole-sequence layer.
"""

from __future__ import annotations

import keras

from lstm_core.layer import LSTM


def lstm_step_model(layer: LSTM, input_dim: int, batch_size: int = 1) -> keras.Model:
    """``[x_t (B, I), h (B, H), c (B, H)] -> [output_t, h_t, c_t]`` with ``layer``'s weights."""
    if layer.go_backwards:
        raise ValueError("a go_backwards LSTM cannot be streamed frame by frame")
    x = keras.Input(batch_shape=(batch_size, input_dim), name="x_t")
    h = keras.Input(batch_shape=(batch_size, layer.units), name="h")
    c = keras.Input(batch_shape=(batch_size, layer.units), name="c")
    out, (h_t, c_t) = layer.step(x, [h, c])
    return keras.Model([x, h, c], [out, h_t, c_t], name=f"{layer.name}_step")
