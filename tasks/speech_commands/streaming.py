"""The streaming keyword spotter: one 20 ms hop per call with explicit state (kws_streaming style).

The streaming model shares (does not copy) the clip model's layers and runs the same front end
(``LogMelFrontend.decimate``/``features``), normalisation (``CausalMeanNormalization.step``) and
LSTM (``layer.step``) one hop at a time, so it reproduces the clip model's probabilities.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="speech_commands")
class StreamingStep(keras.layers.Layer):
    """One hop of the clip model with explicit state (kws_streaming style, external state).

    Inputs: ``hop [B, hop_samples]``, then the states of :func:`streaming_state_shapes`:
    ``fir_state [B, fir_context]`` (only with decimation), ``frame_state [B, frame_context]``,
    ``norm_mean [B, features]`` (only with causal mean normalisation), ``h [B, units]``,
    ``c [B, units]``. Outputs: the probabilities after this hop and the next states, in the
    same order. It shares (does not copy) the clip model's layers; the LSTM runs one step with
    ``layer.step``.
    """

    def __init__(self, clip_model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.frontend = clip_model.get_layer("log_mel")
        self.standardize = clip_model.get_layer("standardize")
        self.lstm = clip_model.get_layer("lstm")
        self.head = clip_model.get_layer("probabilities")
        self.state_names = list(streaming_state_shapes(clip_model))
        self.mean_norm = clip_model.get_layer("causal_mean_norm") if "norm_mean" in self.state_names else None

    def call(self, inputs):
        fe = self.frontend
        hop, state = inputs[0], dict(zip(self.state_names, inputs[1:]))
        new = {}
        x = hop
        if fe.fir_context:
            x = fe.decimate(hop, history=state["fir_state"])
            new["fir_state"] = tf.concat([state["fir_state"], hop], axis=1)[:, -fe.fir_context :]
        frame = tf.concat([state["frame_state"], x], axis=1)
        new["frame_state"] = frame[:, -fe.frame_context :]
        feats = self.standardize(fe.features(frame[:, None, :]))[:, 0, :]  # a 1-frame sequence
        if self.mean_norm is not None:
            feats, new["norm_mean"] = self.mean_norm.step(feats, state["norm_mean"])
        out, (new["h"], new["c"]) = self.lstm.step(feats, [state["h"], state["c"]])
        return [self.head(out), *(new[k] for k in self.state_names)]


def streaming_state_shapes(clip_model: keras.Model) -> dict:
    fe = clip_model.get_layer("log_mel")
    units = clip_model.get_layer("lstm").units
    shapes = {}
    if fe.fir_context:
        shapes["fir_state"] = fe.fir_context
    shapes["frame_state"] = fe.frame_context
    if "causal_mean_norm" in {layer.name for layer in clip_model.layers}:
        shapes["norm_mean"] = fe.cfg.num_features
    shapes["h"] = units
    shapes["c"] = units
    return shapes


def build_streaming_model(clip_model: keras.Model) -> keras.Model:
    """Functional model ``(hop, *states) -> (probabilities, *next_states)`` (batch 1)."""
    fe = clip_model.get_layer("log_mel")
    if fe.frame_context == 0:
        raise ValueError("streaming needs frame_ms > hop_ms")
    hop = keras.Input((fe.cfg.hop_samples,), batch_size=1, name="hop")
    states = [keras.Input((n,), batch_size=1, name=k) for k, n in streaming_state_shapes(clip_model).items()]
    outputs = StreamingStep(clip_model, name="streaming_step")([hop, *states])
    return keras.Model([hop, *states], outputs, name="speech_commands_streaming")


def initial_streaming_state(clip_model: keras.Model) -> list[np.ndarray]:
    return [np.zeros((1, n), np.float32) for n in streaming_state_shapes(clip_model).values()]


def stream_clip(step_fn, clip: np.ndarray, state: list[np.ndarray], hop_samples: int):
    """Feed ``clip`` hop by hop through ``step_fn(hop, *state) -> [probs, *state]``.

    Returns ``(probabilities per hop [T, C], final state)``.
    """
    probs = []
    for start in range(0, len(clip) - hop_samples + 1, hop_samples):
        out = step_fn(clip[None, start : start + hop_samples].astype(np.float32), *state)
        probs.append(np.asarray(out[0])[0])
        state = [np.asarray(s) for s in out[1:]]
    return np.stack(probs), state
