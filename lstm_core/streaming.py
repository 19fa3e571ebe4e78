"""One-step (streaming) models: explicit (h, c) state in and out, for frame-by-frame inference.

The fused TFLite op keeps its state inside the interpreter; an app that feeds one frame at a
time (keyword spotting, online forecasting) wants the state as plain tensors it owns. These
models reuse the trained layer's weights through :meth:`lstm_core.LSTM.step`, so stepping them
over a sequence reproduces the whole-sequence layer.
"""

from __future__ import annotations

import keras

from lstm_core.layer import LSTM

__all__ = ["lstm_step_model"]


def lstm_step_model(layer: LSTM, input_dim: int, batch_size: int = 1) -> keras.Model:
    """A one-step model ``[x_t (B, I), h (B, H), c (B, H)] -> [output_t, h_t, c_t]`` sharing
    ``layer``'s weights (it exports to TFLite like any model; the app owns the state).

    Args:
        layer: a built :class:`lstm_core.LSTM` (not ``go_backwards``: a backwards layer needs
            the whole sequence).
        input_dim: size of one input frame (I).
        batch_size: the static batch size of the inputs (1 for on-device streaming).

    Returns:
        A ``keras.Model`` named ``<layer name>_step``; stepping it over a sequence from zero
        state reproduces ``layer`` on the whole sequence.

    Raises:
        ValueError: ``layer.go_backwards`` is set.

    Example:

    ```python
    step = lstm_step_model(model.get_layer("lstm"), input_dim=40)
    h = c = np.zeros((1, step.inputs[1].shape[-1]), "float32")
    for frame in frames:                     # each (1, 40)
        output, h, c = step([frame, h, c])
    ```
    """
    if layer.go_backwards:
        raise ValueError("a go_backwards LSTM cannot be streamed frame by frame")
    x = keras.Input(batch_shape=(batch_size, input_dim), name="x_t")
    h = keras.Input(batch_shape=(batch_size, layer.units), name="h")
    c = keras.Input(batch_shape=(batch_size, layer.units), name="c")
    out, (h_t, c_t) = layer.step(x, [h, c])
    return keras.Model([x, h, c], [out, h_t, c_t], name=f"{layer.name}_step")
