"""The forecaster: ``lstm_core.LSTM`` encoder -> direct multi-step Dense head.

``window [B, L, F] (, future [B, H, G]) -> forecast [B, H]`` (or ``[B, H, Q]`` with quantile
outputs). The window rows are the scaled first differences of the target, scaled covariates
and calendar inputs (see :func:`tasks.forecasting.data.model_rows`); ``future`` holds, for
every forecast step, its calendar inputs and the seasonal-lag levels (relative to the last
observed level), which the head sees beside the encoder state. The outputs are the changes of the scaled target
from its last observed value for steps 1..H ("direct" strategy: one head predicts every
step at once, no feedback of predictions). With ``ensemble=K`` K independently initialised
encoder+head members are trained side by side (each on its own loss) and averaged.

The streaming model (:func:`build_streaming_model`) runs the same weights one time step per
call with explicit ``(h, c)`` state through :meth:`lstm_core.LSTM.step` and emits the
forecast from the current state, so stepping it over a window equals the window model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import lstm_core

from tasks.forecasting import hybrid
from tasks.forecasting.config import ModelConfig

SMALL_DATA_WINDOWS = 1000


def default_ensemble(train_windows: int) -> int:
    return 3 if train_windows < SMALL_DATA_WINDOWS else 1


def with_median(quantiles) -> tuple[float, ...]:
    """Sorted quantiles with the median added (it is the point forecast); ``()`` stays ``()``."""
    if not quantiles:
        return ()
    return tuple(sorted({round(float(q), 6) for q in quantiles} | {0.5}))


def median_index(config: ModelConfig) -> int | None:
    if not config.quantiles:
        return None
    return int(np.argmin(np.abs(np.asarray(config.quantiles) - 0.5)))


@keras.saving.register_keras_serializable(package="forecasting")
class ForecastLoss(keras.losses.Loss):
    """Mean absolute error, or the pinball (quantile) loss, averaged over steps and members.

    ``y_true`` is ``[B, H]``; ``y_pred`` is ``[B, (K,) H, (Q)]``.
    """

    def __init__(self, quantiles=(), ensemble=1, name="forecast_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]
        self.ensemble = int(ensemble)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        if self.ensemble > 1:
            y_true = y_true[:, None]
        if self.quantiles:
            err = y_true[..., None] - y_pred
            q = tf.constant(self.quantiles, y_pred.dtype)
            loss = tf.maximum(q * err, (q - 1.0) * err)
        else:
            loss = tf.abs(y_true - y_pred)
        return tf.reduce_mean(tf.reshape(loss, [tf.shape(loss)[0], -1]), axis=-1)

    def get_config(self):
        return {**super().get_config(), "quantiles": self.quantiles, "ensemble": self.ensemble}


class _Layers:
    """Makes a member's layers, or (``model`` given) takes the trained ones by name."""

    def __init__(self, model: keras.Model | None = None):
        self.model = model

    def __call__(self, name: str, make):
        return self.model.get_layer(name) if self.model is not None else make(name)


def head_output(cfg: ModelConfig, state, future_flat, k: int, layers: _Layers):
    """Encoder state (+ the flattened future-step inputs) -> ``[B, H(, Q)]`` of member ``k``.

    With future inputs the head also has a linear path from them and the state (``skip_k``),
    so a weighted seasonal-lag forecast is one matrix away and the ReLU layer learns the rest.
    """
    z = state
    if future_flat is not None:
        z = layers(f"state_and_future_{k}", lambda n: keras.layers.Concatenate(name=n))([state, future_flat])
    y = z
    if cfg.hidden:
        y = layers(f"hidden_{k}", lambda n: keras.layers.Dense(cfg.hidden, activation="relu", name=n))(y)
    out = layers(f"head_{k}", lambda n: keras.layers.Dense(cfg.horizon * cfg.num_outputs, name=n))(y)
    if future_flat is not None:
        skip = layers(f"skip_{k}", lambda n: keras.layers.Dense(cfg.horizon * cfg.num_outputs, use_bias=False, name=n))
        out = layers(f"with_skip_{k}", lambda n: keras.layers.Add(name=n))([out, skip(z)])
    if cfg.quantiles:
        out = keras.layers.Reshape((cfg.horizon, cfg.num_outputs))(out)
    return out


def model_inputs(cfg: ModelConfig):
    """``[window [B, L, F]]`` (+ ``future [B, H, G]`` when there are future-step inputs)."""
    inputs = [keras.Input((cfg.lookback, cfg.num_features), name="window")]
    if cfg.num_future:
        inputs.append(keras.Input((cfg.horizon, cfg.num_future), name="future"))
    return inputs


def _member(cfg: ModelConfig, window, future_flat, k: int):
    """One encoder + head; with the hybrid on, the encoder sees the normalised window and the
    head's normalised path is turned back into changes of the level (:mod:`tasks.forecasting.hybrid`)."""
    lstm = lstm_core.LSTM(cfg.units, dropout=cfg.dropout, name=f"lstm_{k}")
    if cfg.hybrid != "on":
        return head_output(cfg, lstm(window), future_flat, k, _Layers())
    season = hybrid.hybrid_season(cfg.seasons, cfg.lookback)
    normalised, stats = hybrid.SeasonalNormalize(cfg.lookback, cfg.horizon, season, tested=True,
                                                 name=f"normalise_{k}")(window)
    steps = cfg.encoder_steps or cfg.lookback
    if steps < cfg.lookback:
        normalised = hybrid.LastSteps(steps, name=f"last_steps_{k}")(normalised)
    out = head_output(cfg, lstm(normalised), future_flat, k, _Layers())
    return hybrid.SeasonalRestore(cfg.lookback, cfg.horizon, name=f"restore_{k}")(out, stats)


def has_combine(cfg: ModelConfig) -> bool:
    """Hybrid point forecasters carry the in-graph baselines and the :class:`hybrid.Combine` mix."""
    return cfg.hybrid == "on" and not cfg.quantiles


def build_models(cfg: ModelConfig) -> tuple[keras.Model, keras.Model]:
    """``(model, training_model)``: the forecaster and (for ensembles) the model that outputs
    every member ``[B, K, H(, Q)]`` so each member gets its own loss. Same layers/weights."""
    inputs = model_inputs(cfg)
    window = inputs[0]
    future_flat = keras.layers.Flatten(name="future_flat")(inputs[1]) if cfg.num_future else None
    members = [_member(cfg, window, future_flat, k) for k in range(cfg.ensemble)]
    model_input = inputs if cfg.num_future else window
    out = members[0] if cfg.ensemble == 1 else keras.layers.Average(name="ensemble_mean")(members)
    if has_combine(cfg):
        season = hybrid.hybrid_season(cfg.seasons, cfg.lookback)
        baselines = hybrid.WindowBaselines(cfg.lookback, cfg.horizon, season, tested=True,
                                           name="window_baselines")(window)
        out = hybrid.Combine(name="combine")(out, baselines)
    model = keras.Model(model_input, out, name="forecaster")
    if cfg.ensemble == 1:
        return model, model
    shape = (1, cfg.horizon) + ((cfg.num_outputs,) if cfg.quantiles else ())
    stacked = keras.layers.Concatenate(axis=1, name="members")(
        [keras.layers.Reshape(shape, name=f"member_{k}")(m) for k, m in enumerate(members)]
    )
    return model, keras.Model(model_input, stacked, name="forecaster_members")


def compile_model(model: keras.Model, cfg: ModelConfig, learning_rate: float, ensemble_outputs: bool) -> None:
    loss = ForecastLoss(cfg.quantiles, cfg.ensemble if ensemble_outputs else 1)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss=loss)


def point_forecast(outputs: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """``[N, H]`` point forecast (the median for quantile models); quantiles sorted per step."""
    outputs = np.asarray(outputs)
    if cfg.quantiles:
        return np.sort(outputs, axis=-1)[..., median_index(cfg)]
    return outputs


def sorted_quantiles(outputs: np.ndarray, cfg: ModelConfig) -> np.ndarray | None:
    return np.sort(np.asarray(outputs), axis=-1) if cfg.quantiles else None


# ----------------------------------------------------------------------------- streaming
class _MemberStep(keras.layers.Layer):
    """``(x_t, h, c) -> (out, h_t, c_t)`` through ``lstm.step`` (the trained layer's cell).

    One named operation per ensemble member (``step_k``), so the streaming graph reads like the
    clip model's ``lstm_k`` layers.
    """

    def __init__(self, lstm, **kwargs):
        super().__init__(**kwargs)
        self.lstm = lstm

    def call(self, x, h, c):
        out, (h_t, c_t) = self.lstm.step(x, [h, c])
        return out, h_t, c_t

    def compute_output_shape(self, x_shape, h_shape, c_shape):
        return h_shape, h_shape, c_shape


def build_streaming_model(model: keras.Model, cfg: ModelConfig) -> keras.Model:
    """``[x_t (1, F), (future (1, H, G),) h (1, K*U), c (1, K*U)] -> [forecast (1, H(, Q)), h_t, c_t]``.

    Reuses the trained layers (``lstm_k.step`` = the LSTM cell with the layer's weights, and
    the same head layers). Start from zero state; after feeding the L rows of a window the
    forecast equals ``model(window(, future))``.
    """
    units, k_members = cfg.units, cfg.ensemble
    x = keras.Input(batch_shape=(1, cfg.num_features), name="x_t")
    future = keras.Input(batch_shape=(1, cfg.horizon, cfg.num_future), name="future") if cfg.num_future else None
    h = keras.Input(batch_shape=(1, units * k_members), name="h")
    c = keras.Input(batch_shape=(1, units * k_members), name="c")
    future_flat = model.get_layer("future_flat")(future) if future is not None else None
    layers = _Layers(model)
    outs, hs, cs = [], [], []
    for k in range(k_members):
        lstm = model.get_layer(f"lstm_{k}")
        if k_members == 1:
            hk, ck = h, c
        else:
            hk = keras.layers.Lambda(lambda t, k=k: t[:, k * units : (k + 1) * units], name=f"h_{k}")(h)
            ck = keras.layers.Lambda(lambda t, k=k: t[:, k * units : (k + 1) * units], name=f"c_{k}")(c)
        out, h_t, c_t = _MemberStep(lstm, name=f"step_{k}")(x, hk, ck)
        outs.append(head_output(cfg, out, future_flat, k, layers))
        hs.append(h_t)
        cs.append(c_t)
    if k_members == 1:
        forecast, h_out, c_out = outs[0], hs[0], cs[0]
    else:
        forecast = keras.layers.Average(name="stream_mean")(outs)
        h_out = keras.layers.Concatenate(name="h_t")(hs)
        c_out = keras.layers.Concatenate(name="c_t")(cs)
    inputs = [x, future, h, c] if future is not None else [x, h, c]
    return keras.Model(inputs, [forecast, h_out, c_out], name="forecaster_step")


def zero_state(cfg: ModelConfig) -> list[np.ndarray]:
    size = cfg.units * cfg.ensemble
    return [np.zeros((1, size), np.float32), np.zeros((1, size), np.float32)]


def stream_window(step_fn, window: np.ndarray, cfg: ModelConfig, state=None, future=None):
    """Feed the rows of ``window [L, F]`` one by one; returns ``(forecast after the last row, state)``.

    ``step_fn(x_t, (future,) h, c)``; ``future [H, G]`` is passed with every row (only the
    forecast after the last row uses it).
    """
    h, c = state if state is not None else zero_state(cfg)
    extra = [np.asarray(future, np.float32)[None]] if cfg.num_future else []
    forecast = None
    for row in np.asarray(window, np.float32):
        forecast, h, c = (np.asarray(v) for v in step_fn(row[None], *extra, h, c))
    return forecast, [h, c]
