"""The forecaster: ``lstm_core.LSTM`` encoder -> direct multi-step Dense head.

``window [B, L, F] -> forecast [B, H]`` (or ``[B, H, Q]`` with quantile outputs). The input
rows are the scaled first differences of the target plus scaled covariates (see
:class:`tasks.forecasting.data.Scaler`); the outputs are the changes of the scaled target
from its last observed value for steps 1..H ("direct" strategy: one head predicts every
step at once, no feedback of predictions). With ``ensemble=K`` K independently initialised
encoder+head members are trained side by side (each on its own loss) and averaged.

The streaming model (:func:`build_streaming_model`) runs the same weights one time step per
call with explicit ``(h, c)`` state through :meth:`lstm_core.LSTM.step` and emits the
forecast from the current state, so stepping it over a window equals the window model.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import lstm_core


SMALL_DATA_WINDOWS = 1000


def default_ensemble(train_windows: int) -> int:
    return 3 if train_windows < SMALL_DATA_WINDOWS else 1


@dataclasses.dataclass
class ModelConfig:
    lookback: int = 0  # 0: chosen from the season and horizon at train time
    horizon: int = 0
    num_features: int = 1
    units: int = 32
    hidden: int = 64  # ReLU layer between the encoder and the head (0: none)
    dropout: float = 0.0  # input dropout of the LSTM
    quantiles: list[float] = dataclasses.field(default_factory=list)
    ensemble: int = 1  # 0: chosen at train time (3 below SMALL_DATA_WINDOWS training windows, else 1)

    @property
    def num_outputs(self) -> int:
        return len(self.quantiles) or 1

    @property
    def median_index(self) -> int | None:
        if not self.quantiles:
            return None
        return int(np.argmin(np.abs(np.asarray(self.quantiles) - 0.5)))


def parse_quantiles(text: str | None) -> list[float]:
    """``"0.1,0.9"`` -> ``[0.1, 0.5, 0.9]`` (the median is always added: it is the point forecast)."""
    if not text:
        return []
    from lstm_core.errors import UserError

    try:
        qs = sorted({round(float(q), 6) for q in text.split(",") if q.strip()} | {0.5})
    except ValueError:
        raise UserError(f"--quantiles {text!r}: expected numbers in (0, 1) separated by commas") from None
    if any(not 0 < q < 1 for q in qs):
        raise UserError(f"--quantiles {text!r}: every quantile must be in (0, 1)")
    return qs


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


def _member_layers(cfg: ModelConfig, k: int):
    lstm = lstm_core.LSTM(cfg.units, dropout=cfg.dropout, name=f"lstm_{k}")
    hidden = keras.layers.Dense(cfg.hidden, activation="relu", name=f"hidden_{k}") if cfg.hidden else None
    head = keras.layers.Dense(cfg.horizon * cfg.num_outputs, name=f"head_{k}")
    return lstm, hidden, head


def _apply_head(cfg: ModelConfig, h, hidden, head, k: int):
    if hidden is not None:
        h = hidden(h)
    out = head(h)
    if cfg.quantiles:
        out = keras.layers.Reshape((cfg.horizon, cfg.num_outputs), name=f"quantiles_{k}")(out)
    return out


def build_models(cfg: ModelConfig) -> tuple[keras.Model, keras.Model]:
    """``(model, training_model)``: the forecaster and (for ensembles) the model that outputs
    every member ``[B, K, H(, Q)]`` so each member gets its own loss. Same layers/weights."""
    window = keras.Input((cfg.lookback, cfg.num_features), name="window")
    members = []
    for k in range(cfg.ensemble):
        lstm, hidden, head = _member_layers(cfg, k)
        members.append(_apply_head(cfg, lstm(window), hidden, head, k))
    if cfg.ensemble == 1:
        model = keras.Model(window, members[0], name="forecaster")
        return model, model
    out = keras.layers.Average(name="ensemble_mean")(members)
    model = keras.Model(window, out, name="forecaster")
    shape = (1, cfg.horizon) + ((cfg.num_outputs,) if cfg.quantiles else ())
    stacked = keras.layers.Concatenate(axis=1, name="members")(
        [keras.layers.Reshape(shape, name=f"member_{k}")(m) for k, m in enumerate(members)]
    )
    return model, keras.Model(window, stacked, name="forecaster_members")


def compile_model(model: keras.Model, cfg: ModelConfig, learning_rate: float, ensemble_outputs: bool) -> None:
    loss = ForecastLoss(cfg.quantiles, cfg.ensemble if ensemble_outputs else 1)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss=loss)


def point_forecast(outputs: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """``[N, H]`` point forecast (the median for quantile models); quantiles sorted per step."""
    outputs = np.asarray(outputs)
    if cfg.quantiles:
        return np.sort(outputs, axis=-1)[..., cfg.median_index]
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
    """``[x_t (1, F), h (1, K*U), c (1, K*U)] -> [forecast (1, H(, Q)), h_t, c_t]``.

    Reuses the trained layers (``lstm_k.step`` = the LSTM cell with the layer's weights, and
    the same hidden/head Dense layers). Start from zero state; after feeding the L rows of a
    window the forecast equals ``model(window)``.
    """
    units, k_members = cfg.units, cfg.ensemble
    x = keras.Input(batch_shape=(1, cfg.num_features), name="x_t")
    h = keras.Input(batch_shape=(1, units * k_members), name="h")
    c = keras.Input(batch_shape=(1, units * k_members), name="c")
    outs, hs, cs = [], [], []
    for k in range(k_members):
        lstm = model.get_layer(f"lstm_{k}")
        hidden = model.get_layer(f"hidden_{k}") if cfg.hidden else None
        head = model.get_layer(f"head_{k}")
        if k_members == 1:
            hk, ck = h, c
        else:
            hk = keras.layers.Lambda(lambda t, k=k: t[:, k * units : (k + 1) * units], name=f"h_{k}")(h)
            ck = keras.layers.Lambda(lambda t, k=k: t[:, k * units : (k + 1) * units], name=f"c_{k}")(c)
        out, h_t, c_t = _MemberStep(lstm, name=f"step_{k}")(x, hk, ck)
        y = hidden(out) if hidden is not None else out
        y = head(y)
        if cfg.quantiles:
            y = keras.layers.Reshape((cfg.horizon, cfg.num_outputs), name=f"stream_quantiles_{k}")(y)
        outs.append(y)
        hs.append(h_t)
        cs.append(c_t)
    if k_members == 1:
        forecast, h_out, c_out = outs[0], hs[0], cs[0]
    else:
        forecast = keras.layers.Average(name="stream_mean")(outs)
        h_out = keras.layers.Concatenate(name="h_t")(hs)
        c_out = keras.layers.Concatenate(name="c_t")(cs)
    return keras.Model([x, h, c], [forecast, h_out, c_out], name="forecaster_step")


def zero_state(cfg: ModelConfig) -> list[np.ndarray]:
    size = cfg.units * cfg.ensemble
    return [np.zeros((1, size), np.float32), np.zeros((1, size), np.float32)]


def stream_window(step_fn, window: np.ndarray, cfg: ModelConfig, state=None):
    """Feed the rows of ``window [L, F]`` one by one; returns ``(forecast after the last row, state)``."""
    h, c = state if state is not None else zero_state(cfg)
    forecast = None
    for row in np.asarray(window, np.float32):
        forecast, h, c = (np.asarray(v) for v in step_fn(row[None], h, c))
    return forecast, [h, c]
